//! The framework apps: manifests, the scenario contract, Python environments, an ephemeral
//! PostgreSQL, launching apps in their own cgroups, and verification.

pub mod http;
pub mod manifest;
pub mod postgres;
pub mod process;
pub mod python;
pub mod scenarios;
pub mod session;
pub mod user;
pub mod verify;
