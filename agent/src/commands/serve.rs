//! `nodeprep serve`: the config's listen address (or `--listen`), a prepared run, then the library's
//! service until SIGTERM.

use std::net::SocketAddr;

use super::{load_config, UsageError, EXIT_READY};
use crate::cli::Global;
use crate::host::Host;

pub(super) fn serve(g: &Global, host: Host, listen: Option<SocketAddr>) -> Result<u8, UsageError> {
    let cfg = load_config(g, &host)?;
    let addr = match listen {
        Some(a) => a,
        None => cfg.serve.listen.parse().map_err(|_| crate::serve::ServeError::Listen {
            addr: cfg.serve.listen.clone(),
            cause: "not an address:port".into(),
        })?,
    };
    let ctx =
        crate::run::prepare(host, cfg, g.instance_type.as_deref(), crate::run::Purpose::Serve);
    crate::serve::run(ctx, addr)?;
    Ok(EXIT_READY)
}
