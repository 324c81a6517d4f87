//! nodeprep: prepares EC2 GPU/EFA Kubernetes nodes and tells the truth about whether they are ready.
//!
//! The binary is a thin wrapper over [`app::run`]. Layout: [`host`] is the one seam to the host
//! (root-prefixed reads, IMDS); [`checks`] holds one module per capability; [`report`] is the model
//! every command prints; [`config`], [`catalog`] and [`identity`] say what the node must have.

pub mod app;
pub mod apply;
pub mod catalog;
pub mod checks;
pub mod cli;
pub mod config;
pub mod host;
pub mod identity;
pub mod logging;
pub mod report;
pub mod serve;
