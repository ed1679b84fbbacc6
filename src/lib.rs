//! hushbox: fetches secrets from pluggable backends and delivers them to
//! programs as files on tmpfs, `_FILE` paths, or environment variables.
//!
//! Data flows one way: CLI → plan → resolver → output writer →
//! supervisor/watcher → hooks.
#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod crash;
pub mod deliver;
pub mod exit;
pub mod generation;
pub mod harden;
pub mod logging;
pub mod manifest;
pub mod output;
pub mod plan;
pub mod resolve;
pub mod supervise;
pub mod template;
pub mod watch;
