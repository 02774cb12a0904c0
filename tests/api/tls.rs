//! HTTPS serving: with FERRY_TLS_CERT/FERRY_TLS_KEY ferry speaks TLS, and the
//! Location it returns uses https so the Azure clients keep their bearer token.

use std::process::Command;

use ferry::app::RunningApp;
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};

use crate::helpers::{API, fresh_database, mint_all_roles, serve_config};

/// Sends a JSON body with a bearer token.
async fn send(http: &Client, method: Method, url: &str, token: &str, body: &Value) -> Response {
    http.request(method, url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_serving_answers_over_https_with_https_locations() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    // A private CA and a server certificate for 127.0.0.1 signed by it.
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=ferry-test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem 2>/dev/null
"#;
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let mut config = serve_config(dir.path(), vec![], 0);
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let app = RunningApp::start(&config, fresh_database().await)
        .await
        .unwrap();
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", app.addr.port());

    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.addr.port()))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not be served"
    );

    let tenant = uuid::Uuid::new_v4();
    let token = mint_all_roles(tenant);
    let registry = format!(
        "{base}/subscriptions/{tenant}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/tlsreg1"
    );
    let body = json!({ "location": "westus", "sku": { "name": "Basic" }, "properties": { "loginServer": "127.0.0.1:5000" } });
    let response = send(
        &http,
        Method::PUT,
        &format!("{registry}?{API}"),
        &token,
        &body,
    )
    .await;
    assert_eq!(response.status(), 201);
    let import = json!({ "source": { "registryUri": "127.0.0.1:5000", "sourceImage": "a:b" } });
    let url = format!("{registry}/importImage?{API}");
    let response = send(&http, Method::POST, &url, &token, &import).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{base}/subscriptions/{tenant}/providers/")),
        "{location}"
    );
    assert_eq!(
        http.get(&location)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
}
