//! hushbox: fetches secrets from pluggable backends and delivers them to
//! programs as files on tmpfs, `_FILE` paths, or environment variables.
//!
//! Data flows one way: CLI → plan → resolver → output writer → supervisor.
#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_code)]

pub mod output;
pub mod supervise;
