//! ferry: imports container images between OCI registries through an
//! ARM-compatible `importImage` API, with Postgres as the durable work queue.

/// Scoped authorization: role assignments, role definitions and the audit log.
pub mod access;
/// The HTTP surface: routes, extractors, the ARM error envelope.
pub mod api;
/// Shared state, server and worker start-up and shutdown.
pub mod app;
/// Bearer tokens, roles, and the authorization extractors.
pub mod auth;
/// Command-line and environment configuration.
pub mod config;
/// AES-256-GCM sealing of stored credentials, the keyring and key rotation.
pub mod crypto;
/// Database connection, migrations and the embedded cluster.
pub mod db;
/// The SSRF guard: which hosts and addresses outbound requests may reach.
pub mod egress;
/// Import operations: ids, status, specs, and the API-side SQL.
pub mod operations;
/// Registry resources and their SQL.
pub mod registries;
/// ferry's OCI distribution client.
pub mod registry_client;
/// The queue consumer that runs imports.
pub mod worker;
