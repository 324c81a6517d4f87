//! `nodeprep config check` and `nodeprep config show`.

use std::path::Path;

use super::{out, UsageError, EXIT_READY};
use crate::cli::Global;
use crate::host::Host;

pub(super) fn check(g: &Global, host: &Host) -> Result<u8, UsageError> {
    let (_, origin) = crate::config::load(host, g.config.as_deref().map(Path::new))?;
    out(&format!("configuration ok: {origin}\n"));
    Ok(EXIT_READY)
}

pub(super) fn show(g: &Global, host: &Host) -> Result<u8, UsageError> {
    let (cfg, origin) = crate::config::load(host, g.config.as_deref().map(Path::new))?;
    out(&crate::config::show(&cfg, &origin));
    Ok(EXIT_READY)
}
