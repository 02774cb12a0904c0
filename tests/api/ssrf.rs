//! The SSRF guard end to end: sources, redirects, token realms and targets on
//! internal addresses are refused without a connection ever being opened, the
//! refusal looks the same for open and closed ports, the source allow-list limits
//! `registryUri`, and a `registryUri` never borrows a registry resource's
//! credentials. 127.0.0.1 is the allowed test address; 127.0.0.2 and 127.0.0.3 (also
//! loopback) stand for internal hosts, and names reach them through a test resolver.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::http::header;
use ferry::{config::ServeConfig, egress::StaticLookup};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestRegistry,
    fault::{Class, Fault, FaultProxy},
    images, mint_all_roles, skopeo, start_app,
    token_server::{TokenConfig, TokenServer},
};

/// A listener on an internal address that counts the connections it gets: every
/// refusal test asserts it got none.
struct Canary {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on 127.0.0.2 nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The test resolver: names that resolve into internal loopback addresses, and
/// `registry.test` that resolves to the allowed 127.0.0.1.
fn lookup() -> StaticLookup {
    let table: HashMap<String, Vec<IpAddr>> = [
        ("internal.test", vec!["127.0.0.2"]),
        ("mapped.test", vec!["::ffff:127.0.0.3"]),
        ("six.test", vec!["::1"]),
        ("registry.test", vec!["127.0.0.1"]),
    ]
    .into_iter()
    .map(|(name, ips)| {
        (
            name.to_owned(),
            ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        )
    })
    .collect();
    StaticLookup(table)
}

/// ferry with two workers, the test resolver, `target1` on the target registry and
/// `app:v1` on the source; `configure` adjusts the config further.
async fn app_with(
    source: TestRegistry,
    extra_insecure: &[&str],
    configure: impl FnOnce(&mut ServeConfig),
) -> (TestApp, images::TestImage) {
    let app = start_app(
        2,
        source,
        TestRegistry::start().await,
        extra_insecure,
        |config| {
            config.egress.lookup = Some(Arc::new(lookup()));
            configure(config);
        },
        mint_all_roles,
    )
    .await;
    app.create_target().await;
    let image = images::image("amd64", 1, 20_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    (app, image)
}

fn from_uri(host: &str) -> Value {
    json!({ "source": { "registryUri": host, "sourceImage": "app:v1" } })
}

/// Runs an import expected to fail with `code`; returns the failure message.
async fn refused(app: &TestApp, body: Value, code: &str) -> String {
    let (status, body) = app.run_import(body).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn internal_sources_are_refused_unconnected_and_open_ports_look_closed() {
    let canary = Canary::start().await;
    let closed = closed_port().await;
    let open = canary.port;
    let source = TestRegistry::start().await;
    let by_name = format!("registry.test:{}", source.host.rsplit_once(':').unwrap().1);
    let (app, _) = app_with(source, &[&by_name], |_| {}).await;

    let open_message = refused(
        &app,
        from_uri(&format!("127.0.0.2:{open}")),
        "SourceNotAllowed",
    )
    .await;
    let closed_message = refused(
        &app,
        from_uri(&format!("127.0.0.2:{closed}")),
        "SourceNotAllowed",
    )
    .await;
    let reason = |message: &str| message.split_once(" failed. ").unwrap().1.to_owned();
    assert_eq!(
        reason(&open_message),
        reason(&closed_message),
        "an open port must look like a closed one"
    );
    for host in [
        format!("[::ffff:7f00:2]:{open}"),
        format!("internal.test:{open}"),
        format!("mapped.test:{open}"),
        format!("six.test:{open}"),
    ] {
        let message = refused(&app, from_uri(&host), "SourceNotAllowed").await;
        // The refusal never tells how a name resolved.
        assert_eq!(reason(&message), reason(&open_message), "{host}");
    }
    assert_eq!(
        canary.connections(),
        0,
        "ferry connected to an internal address"
    );
    // The allowed address, reached by name, still works.
    let (status, body) = app.run_import(from_uri(&by_name)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn redirects_and_token_realms_into_internal_addresses_are_refused() {
    let canary = Canary::start().await;
    let source = TestRegistry::start().await;
    let mut proxies = Vec::new();
    for _ in 0..5 {
        proxies.push(FaultProxy::start(&source.host).await);
    }
    let hosts: Vec<&str> = proxies.iter().map(|p| p.host.as_str()).collect();
    let (app, image) = app_with(source, &hosts, |_| {}).await;
    let [cdn, to_cdn, to_literal, to_name, realm] = &proxies[..] else {
        unreachable!()
    };

    // A blob redirect to an allowed host is followed (the CDN pattern).
    to_cdn.inject(
        Class::BlobGet,
        Fault::Redirect(format!("http://{}", cdn.host)),
    );
    let (status, body) = app.run_import(from_uri(&to_cdn.host)).await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "app:v1", &image.manifest).await;
    assert!(cdn.requests().iter().any(|s| s.path.contains("/blobs/")));

    // Redirects to an internal literal or to a name resolving internally are not.
    let internal = format!("127.0.0.2:{}", canary.port);
    to_literal.inject(
        Class::ManifestGet,
        Fault::Redirect(format!("http://{internal}")),
    );
    to_name.inject(
        Class::ManifestGet,
        Fault::Redirect(format!("http://internal.test:{}", canary.port)),
    );
    for proxy in [to_literal, to_name] {
        let message = refused(&app, from_uri(&proxy.host), "SourceNotAllowed").await;
        assert!(
            !message.contains("internal.test") && !message.contains("127.0.0.2"),
            "{message}"
        );
    }

    // A bearer challenge whose realm is internal: no token request goes out.
    let challenge = format!(r#"Bearer realm="http://{internal}/token",service="x""#);
    for class in [Class::ManifestGet, Class::Head, Class::Other] {
        realm.inject(
            class,
            Fault::Respond {
                status: 401,
                header: header::WWW_AUTHENTICATE,
                value: challenge.clone(),
            },
        );
    }
    refused(&app, from_uri(&realm.host), "SourceNotAllowed").await;
    assert_eq!(
        canary.connections(),
        0,
        "ferry connected to an internal address"
    );
}

#[tokio::test]
async fn targets_on_internal_addresses_are_refused() {
    let canary = Canary::start().await;
    let (app, _) = app_with(TestRegistry::start().await, &[], |_| {}).await;
    let internal = format!("127.0.0.2:{}", canary.port);
    let response = app.put_registry("internal1", &internal).await;
    assert_eq!(response.status(), 201);
    let location = app
        .import("internal1", from_uri(&app.source.host))
        .await
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "TargetNotAllowed", "{body}");
    assert_eq!(canary.connections(), 0);
}

#[tokio::test]
async fn the_source_allow_list_limits_registry_uris_but_not_resources() {
    let source = TestRegistry::start().await;
    let proxy = FaultProxy::start(&source.host).await;
    let (app, image) = app_with(source, &[&proxy.host], |config| {
        config.egress.source_allowlist = vec!["registry.example".into(), "*.example.org".into()];
    })
    .await;
    let message = refused(&app, from_uri(&proxy.host), "SourceNotAllowed").await;
    assert!(message.contains("allow-list"), "{message}");
    assert!(
        proxy.requests().is_empty(),
        "a refused source was contacted"
    );

    // A registry resource is the operator's own declaration: not limited by the list.
    let response = app.put_registry("source1", &app.source.host.clone()).await;
    assert_eq!(response.status(), 201);
    let (status, body) = app
        .run_import(json!({ "source": { "resourceId": app.registry_path("source1"), "sourceImage": "app:v1" } }))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "app:v1", &image.manifest).await;
}

#[tokio::test]
async fn a_registry_uri_never_borrows_a_resources_stored_credentials() {
    const ALICE: (&str, &str) = ("alice", "deputy-9");
    let (app, _) = app_with(TestRegistry::start_htpasswd(&[ALICE]).await, &[], |_| {}).await;
    let response = app
        .put_registry_with_login("source1", &app.source.host.clone(), ALICE)
        .await;
    assert_eq!(response.status(), 201);

    // The caller names the same host directly, without credentials of its own.
    let (status, body) = app.run_import(from_uri(&app.source.host)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "SourceRegistryError", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused the credentials"),
        "{body}"
    );
    // Through the resource (and the caller's read right on it) the import works.
    let (status, body) = app
        .run_import(json!({ "source": { "resourceId": app.registry_path("source1"), "sourceImage": "app:v1" } }))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn credentials_reach_only_token_realms_of_the_registrys_own_domain() {
    const ALICE: (&str, &str) = ("alice", "realm-5");
    let tokens = TokenServer::start(TokenConfig {
        users: vec![(ALICE.0.into(), ALICE.1.into())],
        ..TokenConfig::default()
    })
    .await;
    let source = TestRegistry::start_token(tokens.auth("source.test", ALICE.0)).await;
    // Reached as `registry.test`, the registry names a realm on another host (127.0.0.1).
    let by_name = format!("registry.test:{}", source.host.rsplit_once(':').unwrap().1);
    let import = json!({ "source": {
        "registryUri": by_name, "sourceImage": "app:v1",
        "credentials": { "username": ALICE.0, "password": ALICE.1 } } });

    let (app, _) = app_with(source, &[&by_name], |_| {}).await;
    let before = tokens.requests().len();
    let (status, body) = app.run_import(import.clone()).await;
    assert_eq!(status, 400, "{body}");
    let asked = tokens.requests().split_off(before);
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|r| r.user.is_none()),
        "credentials went to a foreign realm: {asked:?}"
    );

    // An operator-trusted realm gets them.
    let source = TestRegistry::start_token(tokens.auth("source.test", ALICE.0)).await;
    let by_name = format!("registry.test:{}", source.host.rsplit_once(':').unwrap().1);
    let mut import = import;
    import["source"]["registryUri"] = json!(by_name);
    let (app, image) = app_with(source, &[&by_name], |config| {
        config.egress.trusted_token_realms = vec!["127.0.0.1".into()];
    })
    .await;
    let (status, body) = app.run_import(import).await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "app:v1", &image.manifest).await;
}

#[tokio::test]
async fn a_closed_resource_cannot_close_a_public_registry_to_others() {
    let mut table = lookup();
    table
        .0
        .insert("public.test".into(), vec!["93.184.216.34".parse().unwrap()]);
    // No workers: nothing is ever fetched, only the API's decision counts.
    let app = start_app(
        0,
        TestRegistry::start().await,
        TestRegistry::start().await,
        &[],
        |config| config.egress.lookup = Some(Arc::new(table)),
        mint_all_roles,
    )
    .await;
    app.create_target().await;
    for (name, host) in [("public1", "public.test"), ("internal1", "internal.test")] {
        let response = app
            .put_registry_properties(
                name,
                json!({ "loginServer": host, "publicNetworkAccess": "Disabled" }),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    // A public host stays open to registryUri imports whoever declares it closed ...
    let response = app.import("target1", from_uri("public.test")).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    // ... while a closed registry ferry reaches internally is refused.
    let response = app.import("target1", from_uri("internal.test")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["target"], "source.registryUri", "{body}");
    assert_eq!(app.operation_count().await, 1);
}
