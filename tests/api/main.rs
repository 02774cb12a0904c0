//! ferry's integration tests: the real service against real Postgres and real
//! distribution registries on 127.0.0.1.

#![expect(
    unreachable_pub,
    reason = "helpers are shared between test modules of one binary"
)]

mod access_assignments;
mod access_audit;
mod access_imports;
mod access_matrix;
mod access_model;
mod auth;
mod client;
mod contract;
mod copy_auth;
mod copy_faults;
mod copy_graph;
mod copy_kinds;
mod copy_mount;
mod copy_progress;
mod embedded;
mod fuzz;
mod helpers;
mod imports;
mod lifecycle;
mod limits;
mod registries;
mod reliability;
mod sdk;
mod secrets;
mod ssrf;
mod tls;
mod tokens;
mod validation;
