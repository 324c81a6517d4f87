//! `nodeprep config check` and `nodeprep config show`.

use super::{load_config_and_origin, out, UsageError, EXIT_READY};
use crate::cli::Global;
use crate::host::Host;

pub(super) fn check(g: &Global, host: &Host) -> Result<u8, UsageError> {
    let (_, origin) = load_config_and_origin(g, host)?;
    out(&format!("configuration ok: {origin}\n"));
    Ok(EXIT_READY)
}

pub(super) fn show(g: &Global, host: &Host) -> Result<u8, UsageError> {
    let (cfg, origin) = load_config_and_origin(g, host)?;
    out(&crate::config::show(&cfg, &origin));
    Ok(EXIT_READY)
}
