//! Bearer tokens from every key source against the real app and an in-process IdP:
//! RS256/ES256 via JWKS, ES256 via a PEM file, HS256 via the secret, OIDC discovery,
//! rotation with a rate-limited refresh, outages, and tampered tokens that must end as
//! 401 with a Bearer challenge and nothing queued.

use base64::Engine as _;
use ferry::config::parse_role_claim;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    API, SECRET, TestApp, fresh_database,
    idp::{Idp, SigningKey, spawn_app_configured},
    serve_config,
};

const AUD: &str = "api://ferry-tests";
const ALL_ROLES: [&str; 3] = [
    "ContainerRegistryContributor",
    "ContainerRegistryDataImporter",
    "ContainerRegistryDataReader",
];

/// Claims an IdP would issue for `tenant`, valid for an hour.
fn claims(tenant: Uuid, iss: &str, roles: &[&str]) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "tid": tenant, "oid": "7d1c7a0e-user", "sub": "pairwise-sub", "azp": "client-app",
        "aud": AUD, "iss": iss, "roles": roles, "iat": now, "nbf": now, "exp": now + 3600,
    })
}

/// `claims` with `changes` applied; a null value removes the claim.
fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// An HS256 token signed with `secret` and naming `kid`.
fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// An unsigned token (`alg: none`).
fn unsigned(claims: &Value) -> String {
    let b64 =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(claims)
    )
}

async fn import_with(app: &TestApp, token: &str) -> reqwest::Response {
    let body = json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } });
    let url = format!("{}/importImage?{API}", app.registry_path("target1"));
    app.request(Method::POST, &url, Some(token), Some(body))
        .await
}

/// An import with `token` is queued.
async fn accepted(app: &TestApp, case: &str, token: &str) {
    let before = app.operation_count().await;
    let response = import_with(app, token).await;
    let status = response.status();
    assert_eq!(status, 202, "{case}: {}", response.text().await.unwrap());
    assert_eq!(app.operation_count().await, before + 1, "{case}");
}

/// An import with `token` is refused with 401 `code` and a Bearer challenge, and
/// nothing is queued.
async fn refused(app: &TestApp, case: &str, token: &str, code: &str) {
    let before = app.operation_count().await;
    let response = import_with(app, token).await;
    assert_eq!(response.status(), 401, "{case}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with(r#"Bearer error="invalid_token", error_description="#),
        "{case}: {challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{case}");
    assert_eq!(app.operation_count().await, before, "{case}");
}

#[tokio::test]
async fn every_key_source_verifies_and_tampered_tokens_are_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let pem = SigningKey::ec("pem-key");
    let certified = SigningKey::rsa("cert-key");
    let p384 = SigningKey::ec_p384("p384-key");
    let impostor = SigningKey::rsa("rsa-1");
    let idp = Idp::start(&[&rsa, &ec]).await;
    let keys_dir = tempfile::tempdir().unwrap();
    let pem_path = keys_dir.path().join("ec.pem");
    std::fs::write(&pem_path, &pem.public_pem).unwrap();
    let cert_path = keys_dir.path().join("rsa-cert.pem");
    std::fs::write(&cert_path, certified.certificate_pem()).unwrap();
    let p384_path = keys_dir.path().join("p384.pem");
    std::fs::write(&p384_path, &p384.public_pem).unwrap();
    let iss = idp.issuer.clone();
    let app = spawn_app_configured(
        |config| {
            config.auth.jwks_url = Some(idp.jwks_url());
            config.auth.jwt_public_keys = vec![pem_path, cert_path, p384_path];
            config.auth.jwt_audiences = vec!["api://another-ferry".into(), AUD.into()];
            config.auth.jwt_issuers = vec![iss.clone()];
            config.auth.role_claims = vec![
                parse_role_claim("AcrImporter=DataImporter").unwrap(),
                parse_role_claim("Readers=DataReader").unwrap(),
            ];
        },
        |tenant| hs256(SECRET.as_bytes(), None, &claims(tenant, &iss, &ALL_ROLES)),
    )
    .await;
    app.create_target().await;

    // Import rights come only from the FERRY_ROLE_CLAIMS mapping of "AcrImporter".
    let good = claims(app.tenant, &iss, &["AcrImporter"]);
    for (case, token) in [
        ("RS256 via JWKS", rsa.sign(&good)),
        ("ES256 via JWKS", ec.sign(&good)),
        ("ES256 via PEM file", pem.sign(&good)),
        ("RS256 via PEM certificate", certified.sign(&good)),
        ("ES384 via PEM file", p384.sign(&good)),
        ("HS256 via secret", hs256(SECRET.as_bytes(), None, &good)),
    ] {
        accepted(&app, case, &token).await;
    }

    let now = chrono::Utc::now().timestamp();
    let invalid = "InvalidAuthenticationToken";
    for (case, token, code) in [
        ("alg none", unsigned(&good), invalid),
        (
            "HS256 signed with the JWKS RSA public key",
            hs256(&rsa.public_pem, Some("rsa-1"), &good),
            invalid,
        ),
        (
            "HS256 signed with the PEM file's bytes",
            hs256(&pem.public_pem, None, &good),
            invalid,
        ),
        ("bad signature", impostor.sign(&good), invalid),
        (
            "expired",
            rsa.sign(&with(
                good.clone(),
                json!({ "exp": now - 3600, "nbf": now - 7200 }),
            )),
            "ExpiredAuthenticationToken",
        ),
        (
            "nbf in the future",
            rsa.sign(&with(good.clone(), json!({ "nbf": now + 600 }))),
            invalid,
        ),
        (
            "wrong aud",
            rsa.sign(&with(good.clone(), json!({ "aud": "api://someone-else" }))),
            invalid,
        ),
        (
            "no aud",
            rsa.sign(&with(good.clone(), json!({ "aud": null }))),
            invalid,
        ),
        (
            "wrong iss",
            ec.sign(&with(
                good.clone(),
                json!({ "iss": "https://evil.example/v2.0" }),
            )),
            invalid,
        ),
        (
            "no exp",
            rsa.sign(&with(good.clone(), json!({ "exp": null }))),
            invalid,
        ),
        (
            "missing tid",
            rsa.sign(&with(good.clone(), json!({ "tid": null }))),
            invalid,
        ),
        (
            "tid not a uuid",
            pem.sign(&with(good.clone(), json!({ "tid": "contoso" }))),
            invalid,
        ),
        (
            "HS256 with the right secret but a foreign issuer",
            hs256(
                SECRET.as_bytes(),
                None,
                &with(good.clone(), json!({ "iss": "https://evil.example/" })),
            ),
            invalid,
        ),
    ] {
        refused(&app, case, &token, code).await;
    }

    // Valid tokens whose roles do not allow importing are 403, not 401.
    for roles in [&["Readers"][..], &["SomethingElse"], &[]] {
        let token = rsa.sign(&claims(app.tenant, &iss, roles));
        let response = import_with(&app, &token).await;
        assert_eq!(response.status(), 403, "{roles:?}");
    }
    // "Readers" maps to DataReader: reading is allowed.
    let reader = rsa.sign(&claims(app.tenant, &iss, &["Readers"]));
    let get = format!("{}?{API}", app.registry_path("target1"));
    let response = app.request(Method::GET, &get, Some(&reader), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.operation_count().await, 6);
}

#[tokio::test]
async fn oidc_discovery_supplies_the_keys_and_the_issuer() {
    let key = SigningKey::rsa("k1");
    let idp = Idp::start(&[&key]).await;
    let iss = idp.issuer.clone();
    let app = spawn_app_configured(
        |config| {
            // No secret at all: OIDC alone is enough.
            config.auth.jwt_secret = None;
            config.auth.oidc_issuer = Some(iss.clone());
            config.auth.jwt_audiences = vec![AUD.into()];
        },
        |tenant| key.sign(&claims(tenant, &iss, &ALL_ROLES)),
    )
    .await;
    // Started without contacting the IdP.
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (0, 0));
    app.create_target().await;
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));

    accepted(&app, "issuer from discovery", &app.token).await;
    let good = claims(app.tenant, &iss, &ALL_ROLES);
    let invalid = "InvalidAuthenticationToken";
    for (case, token) in [
        (
            "another issuer",
            key.sign(&with(
                good.clone(),
                json!({ "iss": "http://127.0.0.1:1/other" }),
            )),
        ),
        (
            "no issuer",
            key.sign(&with(good.clone(), json!({ "iss": null }))),
        ),
        (
            "HS256 while no secret is configured",
            hs256(SECRET.as_bytes(), None, &good),
        ),
    ] {
        refused(&app, case, &token, invalid).await;
    }
    // Everything above came from the cache.
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn rotated_keys_are_picked_up_with_a_rate_limited_refresh() {
    let (first, second, third) = (
        SigningKey::rsa("k1"),
        SigningKey::rsa("k2"),
        SigningKey::ec("k3"),
    );
    let idp = Idp::start(&[&first]).await;
    let iss = idp.issuer.clone();
    let app = spawn_app_configured(
        |config| {
            config.auth.jwks_url = Some(idp.jwks_url());
            config.auth.jwt_audiences = vec![AUD.into()];
            config.auth.jwks_min_refresh = std::time::Duration::from_secs(3600);
        },
        |tenant| first.sign(&claims(tenant, &iss, &ALL_ROLES)),
    )
    .await;
    app.create_target().await;
    assert_eq!(idp.jwks_fetches(), 1);

    // The IdP rotates: a token with the new kid makes ferry refetch once.
    idp.rotate(&[&second]);
    let token = |key: &SigningKey| key.sign(&claims(app.tenant, &iss, &ALL_ROLES));
    accepted(&app, "rotated key", &token(&second)).await;
    assert_eq!(idp.jwks_fetches(), 2);

    // Within the interval, unknown kids are refused without another fetch, even one
    // the IdP has started publishing, and the retired key is gone.
    idp.rotate(&[&second, &third]);
    let invalid = "InvalidAuthenticationToken";
    refused(
        &app,
        "kid published after the refresh",
        &token(&third),
        invalid,
    )
    .await;
    refused(
        &app,
        "made-up kid",
        &second.sign_as("k9", &claims(app.tenant, &iss, &ALL_ROLES)),
        invalid,
    )
    .await;
    refused(&app, "retired kid", &token(&first), invalid).await;
    assert_eq!(idp.jwks_fetches(), 2);
    accepted(&app, "current key still works", &token(&second)).await;
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn an_idp_outage_refuses_tokens_until_keys_arrive_then_keeps_the_last_good_ones() {
    let (first, second) = (SigningKey::rsa("k1"), SigningKey::rsa("k2"));
    let idp = Idp::start(&[&first]).await;
    idp.set_down(true);
    let iss = idp.issuer.clone();
    let app = spawn_app_configured(
        |config| {
            config.auth.jwt_secret = None;
            config.auth.jwks_url = Some(idp.jwks_url());
            config.auth.jwt_audiences = vec![AUD.into()];
            // Every use refreshes, and a failed fetch may be retried at once.
            config.auth.jwks_refresh = std::time::Duration::ZERO;
            config.auth.jwks_min_refresh = std::time::Duration::ZERO;
        },
        |tenant| first.sign(&claims(tenant, &iss, &ALL_ROLES)),
    )
    .await;

    // Ferry is up while the IdP is down; the token is refused, not an error.
    let put = app.put_registry("target1", &app.target.host.clone()).await;
    assert_eq!(put.status(), 401);
    assert_eq!(
        put.json::<Value>().await.unwrap()["error"]["code"],
        "InvalidAuthenticationToken"
    );
    assert_eq!(idp.jwks_fetches(), 1);

    idp.set_down(false);
    app.create_target().await;
    let token = |key: &SigningKey| key.sign(&claims(app.tenant, &iss, &ALL_ROLES));

    // Down again: the fetch fails, the last good keys still verify.
    idp.set_down(true);
    let fetches = idp.jwks_fetches();
    accepted(&app, "last good keys during an outage", &token(&first)).await;
    assert!(idp.jwks_fetches() > fetches);

    // Back with k1 revoked: the periodic refresh drops it without any unknown kid.
    idp.set_down(false);
    idp.rotate(&[&second]);
    refused(
        &app,
        "revoked key",
        &token(&first),
        "InvalidAuthenticationToken",
    )
    .await;
    accepted(&app, "new key", &token(&second)).await;
}

#[tokio::test]
async fn jwks_redirects_are_not_followed() {
    let key = SigningKey::rsa("k1");
    let idp = Idp::start(&[&key]).await;
    let iss = idp.issuer.clone();
    let app = spawn_app_configured(
        |config| {
            config.auth.jwks_url = Some(idp.redirecting_url());
            config.auth.jwt_audiences = vec![AUD.into()];
        },
        |tenant| hs256(SECRET.as_bytes(), None, &claims(tenant, &iss, &ALL_ROLES)),
    )
    .await;
    app.create_target().await;
    let token = key.sign(&claims(app.tenant, &iss, &ALL_ROLES));
    refused(
        &app,
        "keys behind a redirect",
        &token,
        "InvalidAuthenticationToken",
    )
    .await;
    assert_eq!((idp.redirect_fetches(), idp.jwks_fetches()), (1, 0));
}

#[tokio::test]
async fn ferry_refuses_to_start_without_a_key_source_or_an_audience() {
    let dir = tempfile::tempdir().unwrap();
    let pool = fresh_database().await;
    let mut config = serve_config(dir.path(), vec![], 0);
    config.auth.jwt_secret = None;
    let error = ferry::app::RunningApp::start(&config, pool.clone())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no token key source"),
        "{error:#}"
    );

    config.auth.oidc_issuer = Some("https://login.microsoftonline.com/common/v2.0".into());
    let error = ferry::app::RunningApp::start(&config, pool)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("FERRY_JWT_AUDIENCES is required"),
        "{error:#}"
    );
}
