//! An in-process OpenID provider on 127.0.0.1 for the token tests: a discovery
//! document, a JWKS it can rotate or stop serving (503), a redirect to the JWKS, and
//! counters of every fetch. Its RSA and EC keys come from the openssl CLI and sign
//! tokens; [`spawn_app_configured`] starts ferry with a modified configuration.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ferry::config::ServeConfig;
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, PublicKeyUse},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{TestApp, TestRegistry};

/// A key pair the IdP signs with.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as PEM (`PUBLIC KEY`), for FERRY_JWT_PUBLIC_KEYS.
    pub public_pem: Vec<u8>,
    private_pem: Vec<u8>,
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (apt-get install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or_default()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

impl SigningKey {
    /// A fresh RSA-2048 key for RS256.
    pub fn rsa(kid: &str) -> Self {
        let private = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let encoding = EncodingKey::from_rsa_pem(&private).unwrap();
        Self::new(kid, Algorithm::RS256, encoding, &private)
    }

    /// A fresh P-256 key for ES256.
    pub fn ec(kid: &str) -> Self {
        Self::ec_on(kid, "P-256", Algorithm::ES256)
    }

    /// A fresh P-384 key for ES384.
    pub fn ec_p384(kid: &str) -> Self {
        Self::ec_on(kid, "P-384", Algorithm::ES384)
    }

    fn ec_on(kid: &str, curve: &str, alg: Algorithm) -> Self {
        let curve = format!("ec_paramgen_curve:{curve}");
        let private = openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", &curve], None);
        let encoding = EncodingKey::from_ec_pem(&private).unwrap();
        Self::new(kid, alg, encoding, &private)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, private: &[u8]) -> Self {
        let public_pem = openssl(&["pkey", "-pubout"], Some(private));
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public_pem,
            private_pem: private.to_vec(),
        }
    }

    /// A self-signed certificate for this key, as PEM (`CERTIFICATE`).
    pub fn certificate_pem(&self) -> Vec<u8> {
        let mut key = tempfile::NamedTempFile::new().unwrap();
        key.write_all(&self.private_pem).unwrap();
        let path = key.path().to_str().unwrap();
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                path,
                "-subj",
                "/CN=ferry-test-idp",
                "-days",
                "1",
            ],
            None,
        )
    }

    /// The public JWK, as an IdP publishes it.
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).unwrap()
    }

    /// Signs `claims` with this key, naming it in the header's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signs `claims` with this key but names `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

struct IdpState {
    issuer: String,
    base: String,
    keys: Mutex<Vec<Value>>,
    down: AtomicBool,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    redirect_fetches: AtomicUsize,
}

/// A running fake IdP; stops when dropped.
pub struct Idp {
    /// The issuer: `http://127.0.0.1:port/tenant/v2.0`.
    pub issuer: String,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    /// Starts the IdP publishing `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issuer = format!("{base}/tenant/v2.0");
        let state = Arc::new(IdpState {
            issuer: issuer.clone(),
            base,
            keys: Mutex::new(keys.iter().map(|key| key.jwk()).collect()),
            down: AtomicBool::new(false),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            redirect_fetches: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(
                "/tenant/v2.0/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/keys", get(jwks))
            .route("/moved", get(moved))
            .with_state(state.clone());
        // Bound already: requests queue until the server task accepts them.
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            issuer,
            state,
            task,
        }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/keys", self.state.base)
    }

    /// A URL that answers 302 to the JWKS.
    pub fn redirecting_url(&self) -> String {
        format!("{}/moved", self.state.base)
    }

    /// Publishes `keys` instead of the current ones.
    pub fn rotate(&self, keys: &[&SigningKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|key| key.jwk()).collect();
    }

    /// While down, discovery and JWKS answer 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn redirect_fetches(&self) -> usize {
        self.state.redirect_fetches.load(Ordering::SeqCst)
    }
}

async fn discovery(State(state): State<Arc<IdpState>>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({
        "issuer": state.issuer,
        "jwks_uri": format!("{}/keys", state.base),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}

async fn moved(State(state): State<Arc<IdpState>>) -> Response {
    state.redirect_fetches.fetch_add(1, Ordering::SeqCst);
    (StatusCode::FOUND, [(header::LOCATION, "/keys")]).into_response()
}

/// Starts ferry (no workers) with `configure` applied to the usual test config;
/// `token` makes the app's default token for its tenant.
pub async fn spawn_app_configured(
    configure: impl FnOnce(&mut ServeConfig),
    token: impl FnOnce(Uuid) -> String,
) -> TestApp {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    super::start_app(0, source, target, &[], configure, token).await
}
