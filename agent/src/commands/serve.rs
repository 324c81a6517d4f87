//! `nodeprep serve`: the config's listen addresses (or `--listen`, `--metrics-listen`), a prepared
//! run, then the library's service until SIGTERM.

use std::net::SocketAddr;

use super::{load_config, UsageError, EXIT_READY};
use crate::cli::Global;
use crate::host::Host;
use crate::serve::ServeError;

pub(super) fn serve(
    g: &Global,
    host: Host,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
) -> Result<u8, UsageError> {
    let cfg = load_config(g, &host)?;
    let parse = |key: &str, value: &str| {
        crate::config::parse_listen(value).map_err(|_| ServeError::Listen {
            addr: format!("{value} ({key})"),
            cause: "not an address:port".into(),
        })
    };
    let addr = match listen {
        Some(a) => a,
        None => parse("serve.listen", &cfg.serve.listen)?,
    };
    let metrics_addr = match metrics_listen {
        Some(a) => Some(a),
        None if cfg.serve.metrics_listen.is_empty() => None,
        None => Some(parse("serve.metrics_listen", &cfg.serve.metrics_listen)?),
    };
    let ctx =
        crate::run::prepare(host, cfg, g.instance_type.as_deref(), crate::run::Purpose::Serve);
    crate::serve::run(ctx, addr, metrics_addr)?;
    Ok(EXIT_READY)
}
