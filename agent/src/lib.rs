//! nodeprep: prepares EC2 GPU/EFA Kubernetes nodes and tells the truth about whether they are ready.
//!
//! Layout (README "Architecture"): [`commands`] turns parsed arguments ([`cli`]) into an exit code;
//! [`run`] opens the host once and runs a selection of checks into a [`report`]; [`capability`]
//! holds one module per thing a node must have and the one registry of checks; [`apply`] executes
//! the plans of the capabilities that change the host; [`host`] is the one seam to the host
//! (root-prefixed reads, typed readers, commands, IMDS); [`serve`] is the long-running service;
//! [`bundle`] collects a support archive.
//! [`config`], [`catalog`] and [`identity`] say what the node must have.

pub(crate) mod apply;
pub mod bundle;
pub mod capability;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod host;
pub mod identity;
pub mod lint;
pub(crate) mod logging;
pub mod report;
pub(crate) mod run;
pub mod serve;

/// An error and all its causes on one line (`a: b: c`), as logs and reports need them: the top
/// error of an HTTP client says "client error (Connect)", only its causes say "Connection refused".
/// A cause whose text the line already holds (wrappers that print their source) is left out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        src = s.source();
    }
    line
}
#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_names_every_cause_once() {
        let refused = E("Connection refused (os error 111)", None);
        let e = E(
            "client error (Connect)",
            Some(Box::new(E("tcp connect error", Some(Box::new(refused))))),
        );
        assert_eq!(
            super::error_chain(&e),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        let wrapper = E(
            "HyperError: client error (Connect)",
            Some(Box::new(E("client error (Connect)", None))),
        );
        assert_eq!(super::error_chain(&wrapper), "HyperError: client error (Connect)");
    }
}
