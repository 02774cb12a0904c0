//! Input and resource limits: per-tenant admission (`tenants`), per-import blob
//! and byte caps (`caps`), timeouts on registry requests and uploads (`timeouts`),
//! and here the request-head bound.

mod caps;
mod tenants;
mod timeouts;

use ferry::config::ServeConfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{TestApp, TestRegistry, mint_all_roles, start_app};

/// ferry with `workers` and `configure` applied, and its `target1` registry.
pub(super) async fn app_with(workers: usize, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let app = start_app(workers, source, target, &[], configure, mint_all_roles).await;
    app.create_target().await;
    app
}

/// Sends a raw HTTP/1.1 GET /healthz with one `x-filler` header of `size` bytes and
/// returns what came back before the server closed (a reset after the answer is
/// fine: the server does not read the rest of a refused head).
async fn raw_get_with_header(addr: std::net::SocketAddr, size: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nx-filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(size)
    );
    // The server may stop reading (and reset) before the whole head is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_and_the_server_carries_on() {
    let app = app_with(0, |_| {}).await;
    let answer = raw_get_with_header(app.app.addr, 64 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A head well within the bound (a large Entra token is ~8 KiB) is served.
    let answer = raw_get_with_header(app.app.addr, 16 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let response = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
