//! systemd notifications (`Type=notify`): READY=1 after the first check run, STATUS= with the
//! summary, WATCHDOG=1 while the check loop is healthy, STOPPING=1 on shutdown. Without
//! NOTIFY_SOCKET (not under systemd) every call does nothing.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use super::Shared;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Half the watchdog period systemd asked for (WATCHDOG_USEC), if it asked.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog while the check loop is healthy; a stuck loop stops the pings, and systemd
/// restarts the service.
pub async fn watchdog(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        match shared.loop_health() {
            Ok(()) => send(&[NotifyState::Watchdog]),
            Err(why) => tracing::error!(reason = %why, "check loop stuck: watchdog not pinged"),
        }
    }
}
