//! What `boot` does for the GPUs: the `/dev/char/MAJOR:MINOR` link of every NVIDIA device node
//! that lacks one. The NVIDIA driver makes its nodes without telling udev, so udev never links
//! them; without the links, a `systemctl daemon-reload` makes systemd re-apply the device cgroup
//! of every container by `/dev/char` path and cuts the GPUs from running containers ("Failed to
//! initialize NVML: Unknown Error"; nvidia-container-toolkit #48). A link that exists and points
//! elsewhere is left alone and named.

use super::observe::{CharLink, DevChar};
use crate::apply::{Action, Plan};

/// The links to make, from what [`super::dev_char`] found.
pub fn plan(nodes: &[DevChar]) -> Plan {
    let mut actions = Vec::new();
    if nodes.is_empty() {
        actions.push(Action::Skip {
            what: "/dev/char links".into(),
            why: "no NVIDIA device nodes (no driver loaded yet, or no GPUs)".into(),
        });
    }
    for n in nodes {
        match (&n.link, n.number) {
            (CharLink::Missing, Some((major, minor))) => actions.push(Action::Symlink {
                link: format!("/dev/char/{major}:{minor}"),
                target: format!("../{}", n.name),
                why: format!(
                    "/dev/{} has no /dev/char link: a systemctl daemon-reload would cut it from running containers",
                    n.name
                ),
            }),
            (CharLink::Other(what), _) => actions.push(Action::Notice {
                message: format!("{what}, not to /dev/{}: left alone", n.name),
            }),
            (CharLink::Unknown(why), _) => actions.push(Action::Notice {
                message: format!("/dev/{}: /dev/char link not checked: {why}", n.name),
            }),
            _ => {}
        }
    }
    Plan { capability: "nvidia", actions }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, number: Option<(u32, u32)>, link: CharLink) -> DevChar {
        DevChar { name: name.into(), number, how: "stat", link }
    }

    #[test]
    fn only_missing_links_are_made() {
        let p = plan(&[
            node("nvidia0", Some((195, 0)), CharLink::Ok),
            node("nvidia1", Some((195, 1)), CharLink::Missing),
            node(
                "nvidia-uvm",
                Some((234, 0)),
                CharLink::Other("/dev/char/234:0 points to ../foo".into()),
            ),
        ]);
        assert_eq!(p.actions.len(), 2, "{:?}", p.actions);
        assert_eq!(
            p.actions[0],
            Action::Symlink {
                link: "/dev/char/195:1".into(),
                target: "../nvidia1".into(),
                why: "/dev/nvidia1 has no /dev/char link: a systemctl daemon-reload would cut it from running containers".into(),
            }
        );
        assert!(
            matches!(&p.actions[1], Action::Notice { message } if message.contains("left alone"))
        );
        assert!(!p.is_noop());
        let none = plan(&[node("nvidia0", Some((195, 0)), CharLink::Ok)]);
        assert!(none.is_noop() && !none.skips());
        assert!(plan(&[]).skips());
    }
}
