//! schemathesis fuzzes the real ferry from openapi.yaml with a token holding every
//! role: no response may be a 5xx, carry an undocumented status, miss a documented
//! header, or have a content type or body its schema does not allow. Two passes:
//! "wide" (tests/fuzz/wide.toml) lets schemathesis generate every path parameter
//! (unknown subscriptions, malformed names); "deep" (tests/fuzz/deep.toml) pins them
//! to resources made here so generated bodies reach the handlers' real work. ferry runs without workers, so
//! the imports it queues (naming arbitrary registries) are never fetched, and the
//! fuzzer's own HTTP clients get a dead loopback proxy for anything but ferry.
//! .ci/run installs schemathesis (tests/sdk/requirements.txt) in FERRY_TEST_PYTHON.

use ferry::auth::Role;
use tokio::process::Command;

use crate::helpers::{API, TestApp, TestRegistry, access::mint_as, output_text, start_app};

/// The checks that make up "zero 5xx and zero schema violations", and ignored_auth:
/// every secured operation must refuse a request without a valid token.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,ignored_auth";

/// The python with schemathesis, or None (outside CI) to skip.
fn python() -> Option<String> {
    let python = std::env::var("FERRY_TEST_PYTHON").ok();
    let usable = python.as_deref().is_some_and(|python| {
        std::process::Command::new(python)
            .args(["-c", "import schemathesis"])
            .output()
            .is_ok_and(|out| out.status.success())
    });
    if usable {
        return python;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "FERRY_TEST_PYTHON ({python:?}) lacks schemathesis; .ci/run installs tests/sdk/requirements.txt"
    );
    eprintln!("SKIPPED schemathesis fuzzing: FERRY_TEST_PYTHON ({python:?}) lacks schemathesis");
    None
}

/// ferry with no workers and a token carrying every role.
async fn fuzz_app() -> TestApp {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let all = [
        Role::Owner,
        Role::Contributor,
        Role::DataImporter,
        Role::DataReader,
    ];
    start_app(
        0,
        source,
        target,
        &[],
        |_| {},
        |t| mint_as(t, "fuzzer", &all),
    )
    .await
}

/// Runs schemathesis against `app`; `config` is a file under tests/fuzz, `env` what
/// its `${…}` placeholders read.
async fn schemathesis(
    python: &str,
    app: &TestApp,
    config: &str,
    env: &[(String, String)],
    seed: u32,
    examples: u32,
) {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new(python);
    command
        .args(["-m", "schemathesis.cli"])
        .args(["--config-file", &format!("{root}/tests/fuzz/{config}")])
        .args(["run", &format!("{root}/openapi.yaml"), "--url", &app.base])
        .args(["--header", &format!("Authorization: Bearer {}", app.token)])
        .args(["--checks", CHECKS])
        .args(["--seed", &seed.to_string()])
        .args(["--max-examples", &examples.to_string()])
        // One worker: hypothesis' lambda introspection is not thread-safe.
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--continue-on-failure"])
        // Hypothesis' timing health check only measures how loaded the machine is.
        .args(["--suppress-health-check", "too_slow"])
        .arg("--no-color")
        .current_dir(dir.path())
        .envs(env.iter().cloned())
        .kill_on_drop(true);
    // Anything the fuzzer sends anywhere but ferry goes to a closed loopback port.
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        command
            .env(proxy, "http://127.0.0.1:9")
            .env(proxy.to_lowercase(), "http://127.0.0.1:9");
    }
    command
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let output = command.output().await.unwrap();
    let text = output_text(&output);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}"
    );
    assert!(
        text.contains(" passed"),
        "schemathesis ran no test:\n{text}"
    );
    // The summary (operations, test cases, checks) for `--nocapture` runs.
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("{}", lines[lines.len().saturating_sub(25)..].join("\n"));
}

/// Every queued operation is still untouched: no worker ever fetched a source.
async fn assert_nothing_fetched(app: &TestApp) -> i64 {
    let (total, touched): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where attempts > 0 or status = 'running') from operations",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(touched, 0, "an import was picked up during fuzzing");
    total
}

#[tokio::test]
async fn schemathesis_finds_nothing_with_generated_paths() {
    let Some(python) = python() else { return };
    let app = fuzz_app().await;
    app.create_registry("rg1", "target1", &app.target.host, serde_json::json!({}))
        .await;
    schemathesis(&python, &app, "wide.toml", &[], 1, 25).await;
    assert_nothing_fetched(&app).await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_on_real_resources() {
    let Some(python) = python() else { return };
    let app = fuzz_app().await;
    let env = deep_fixtures(&app).await;
    schemathesis(&python, &app, "deep.toml", &env, 2, 25).await;
    // The two fixtures plus at least the documented example body were queued.
    assert!(assert_nothing_fetched(&app).await > 2);
}

/// What tests/fuzz/deep.toml pins: registries (target1 for reads and imports,
/// scratch1 for PUT/PATCH, doomed1 for DELETE), two queued imports (one to poll,
/// one to cancel) and role assignments at each scope (one to read, one to delete).
async fn deep_fixtures(app: &TestApp) -> Vec<(String, String)> {
    let none = serde_json::json!({});
    for (name, host) in [
        ("target1", &app.target.host),
        ("source1", &app.source.host),
        ("scratch1", &app.target.host),
        ("doomed1", &app.target.host),
    ] {
        app.create_registry("rg1", name, host, none.clone()).await;
    }
    let mut env = vec![var("SUBSCRIPTION", app.subscription)];
    for (name, tag) in [
        ("OPERATION", "fuzz/poll:1"),
        ("CANCEL_OPERATION", "fuzz/cancel:1"),
    ] {
        let body = serde_json::json!({
            "source": { "registryUri": app.source.host, "sourceImage": "fuzz/app:1" },
            "targetTags": [tag],
        });
        let location = app.start_import(body).await;
        env.push(var(name, crate::helpers::operation_id(&location)));
    }
    let scopes = [
        ("SUBSCRIPTION", app.subscription_path()),
        ("GROUP", app.group_path("rg1")),
        ("REGISTRY", app.registry_in("rg1", "target1")),
    ];
    for (suffix, scope) in scopes {
        let read = app.assign(&scope, Role::DataReader, "reader").await;
        let doomed = app.assign(&scope, Role::DataReader, "doomed").await;
        env.push(var(&format!("ASSIGNMENT_{suffix}"), read));
        env.push(var(&format!("DOOMED_ASSIGNMENT_{suffix}"), doomed));
    }
    env
}

/// `FERRY_FUZZ_{name}`, as the config file spells its placeholders.
fn var(name: &str, value: impl ToString) -> (String, String) {
    (format!("FERRY_FUZZ_{name}"), value.to_string())
}

/// Regressions for what fuzzing found, pinned so they stay fixed whatever the
/// fuzzer's seed explores: a NUL character in a JSON string was a 500 (PostgreSQL
/// cannot store it); a repeated `$filter` and a path segment that is not UTF-8 got
/// axum's plain-text 400 instead of an ARM error; a running operation's status
/// carried `"endTime": null`.
#[tokio::test]
async fn fuzz_findings_stay_fixed() {
    let app = fuzz_app().await;
    app.create_target().await;
    let nul = "a\u{0}b";
    let registry = serde_json::json!({
        "location": "westus", "sku": { "name": "Standard" },
        "tags": { "team": nul }, "properties": { "loginServer": app.target.host },
    });
    let path = format!("{}?{API}", app.registry_path("target2"));
    let put = app.call(reqwest::Method::PUT, &path, &app.token, Some(registry));
    let import = app.import(
        "target1",
        serde_json::json!({ "source": { "registryUri": app.source.host, "sourceImage": nul } }),
    );
    let (put, import) = tokio::join!(put, import);
    assert_eq!(put.0, 400, "{}", put.1);
    assert_eq!(put.1["error"]["code"], "InvalidRequestContent");
    assert_eq!(import.status(), 400);
    let body: serde_json::Value = import.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidRequestContent", "{body}");

    let sub = app.subscription;
    for path in [
        format!("/subscriptions/{sub}/resources?$filter=a&$filter=b&{API}"),
        format!("/subscriptions/%FF/providers/Microsoft.ContainerRegistry/registries?{API}"),
        format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/%FF?{API}"),
    ] {
        let response = app.request(reqwest::Method::GET, &path, None, None).await;
        assert_eq!(response.status(), 400, "{path}");
        let content_type = &response.headers()["content-type"];
        assert_eq!(content_type, "application/json; charset=utf-8", "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "InvalidParameters", "{path}: {body}");
    }

    let location = app
        .start_import(serde_json::json!({
            "source": { "registryUri": app.source.host, "sourceImage": "fuzz/app:1" },
        }))
        .await;
    let response = app.poll(&location).await;
    assert_eq!(response.status(), 202);
    let status: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status["status"], "InProgress");
    assert!(status.get("endTime").is_none(), "{status}");
}
