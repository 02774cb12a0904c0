//! An in-process Docker-style token server on 127.0.0.1 for registries started with
//! `TestRegistry::start_token`: `GET realm` with HTTP Basic (or anonymously), and the
//! OAuth2 `POST realm` with a refresh token or password. Tokens are RS256 JWTs whose
//! `x5c` header carries a self-signed certificate the registries trust. Every
//! request is recorded so tests can count token fetches and see the grants asked.

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::registry::TokenAuth;

/// Who may get tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenConfig {
    /// Username and password pairs; each gets every action it asks for.
    pub users: Vec<(String, String)>,
    /// Refresh tokens accepted by `POST realm`, each acting as the named user.
    pub refresh_tokens: Vec<(String, String)>,
    /// Whether a request without credentials is granted `pull`.
    pub anonymous_pull: bool,
}

/// One request the token server answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// `grant_type` of a POST; None for GET.
    pub grant_type: Option<String>,
    pub service: Option<String>,
    /// Every scope asked for, split on spaces and across repeated `scope` params.
    pub scopes: Vec<String>,
    /// The user the request authenticated as, if it did.
    pub user: Option<String>,
    pub status: u16,
}

struct Inner {
    config: TokenConfig,
    issuer: String,
    key: EncodingKey,
    x5c: String,
    log: Mutex<Vec<TokenRequest>>,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    pub realm: String,
    pub issuer: String,
    inner: Arc<Inner>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes the RSA key and self-signed certificate that sign and vouch for tokens.
fn signing_material(dir: &std::path::Path) -> (EncodingKey, String) {
    let output = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=ferry-test-token-issuer"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = EncodingKey::from_rsa_pem(&std::fs::read(dir.join("key.pem")).unwrap()).unwrap();
    // x5c holds the standard-base64 DER, which is exactly the PEM body.
    let pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let x5c = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    (key, x5c)
}

impl TokenServer {
    /// Starts the server on a free loopback port.
    pub async fn start(config: TokenConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, x5c) = signing_material(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = "ferry-test-token-issuer".to_owned();
        let inner = Arc::new(Inner {
            config,
            issuer: issuer.clone(),
            key,
            x5c,
            log: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/token", get(fetch).post(exchange))
            .with_state(inner.clone());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            realm: format!("http://{addr}/token"),
            issuer,
            inner,
            dir,
            task,
        }
    }

    /// The `auth: token:` settings of a registry for `service`; pushers log in as `user`.
    pub fn auth(&self, service: &str, user: &str) -> TokenAuth {
        let password = self
            .inner
            .config
            .users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no token user {user}"));
        TokenAuth {
            realm: self.realm.clone(),
            service: service.to_owned(),
            issuer: self.issuer.clone(),
            root_cert: self.dir.path().join("cert.pem"),
            login: (user.to_owned(), password),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.inner.log.lock().unwrap().clone()
    }

    /// The requests made for one registry's `service`.
    pub fn requests_for(&self, service: &str) -> Vec<TokenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.service.as_deref() == Some(service))
            .collect()
    }
}

fn form(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// Splits every `scope` value of a query or form into single scopes.
fn scopes(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Inner {
    fn password_ok(&self, user: &str, password: &str) -> bool {
        self.config
            .users
            .iter()
            .any(|(u, p)| u == user && p == password)
    }

    /// The user named by a valid Basic header; Err(()) when the header is wrong.
    fn basic_user(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let encoded = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Basic "))
            .ok_or(())?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(drop)?;
        let text = String::from_utf8(decoded).map_err(drop)?;
        let (user, password) = text.split_once(':').ok_or(())?;
        if self.password_ok(user, password) {
            Ok(Some(user.to_owned()))
        } else {
            Err(())
        }
    }

    /// Signs a token granting `user` (or anonymous) what `scopes` ask for.
    fn token(&self, service: &str, scopes: &[String], user: Option<&str>) -> String {
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                let actions: Vec<&str> = actions
                    .split(',')
                    .filter(|a| user.is_some() || (self.config.anonymous_pull && *a == "pull"))
                    .collect();
                Some(json!({ "type": kind, "name": name, "actions": actions }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": self.issuer, "sub": user.unwrap_or(""), "aud": service,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(), "access": access,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.x5c = Some(vec![self.x5c.clone()]);
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    fn record(&self, request: TokenRequest) {
        self.log.lock().unwrap().push(request);
    }
}

fn unauthorized() -> Response {
    let body = json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "bad credentials" }] });
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// `GET realm?service=…&scope=…`: the Docker token flow.
async fn fetch(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs = form(query.unwrap_or_default().as_bytes());
    let mut seen = TokenRequest {
        method: "GET".into(),
        grant_type: None,
        service: param(&pairs, "service").map(str::to_owned),
        scopes: scopes(&pairs),
        user: None,
        status: 401,
    };
    let Ok(user) = inner.basic_user(&headers) else {
        inner.record(seen);
        return unauthorized();
    };
    let token = inner.token(
        seen.service.as_deref().unwrap_or_default(),
        &seen.scopes,
        user.as_deref(),
    );
    seen.user = user;
    seen.status = 200;
    inner.record(seen);
    Json(json!({ "token": token, "access_token": token, "expires_in": 300 })).into_response()
}

/// `POST realm` (OAuth2): `grant_type=refresh_token` or `password`.
async fn exchange(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    let pairs = form(&body);
    let grant_type = param(&pairs, "grant_type").map(str::to_owned);
    let user = match grant_type.as_deref() {
        Some("refresh_token") => param(&pairs, "refresh_token").and_then(|token| {
            inner
                .config
                .refresh_tokens
                .iter()
                .find(|(t, _)| t == token)
                .map(|(_, user)| user.clone())
        }),
        Some("password") => match (param(&pairs, "username"), param(&pairs, "password")) {
            (Some(u), Some(p)) if inner.password_ok(u, p) => Some(u.to_owned()),
            _ => None,
        },
        _ => None,
    };
    let mut seen = TokenRequest {
        method: "POST".into(),
        grant_type,
        service: param(&pairs, "service").map(str::to_owned),
        scopes: scopes(&pairs),
        user: user.clone(),
        status: 401,
    };
    let Some(user) = user else {
        inner.record(seen);
        return unauthorized();
    };
    let token = inner.token(
        seen.service.as_deref().unwrap_or_default(),
        &seen.scopes,
        Some(&user),
    );
    seen.status = 200;
    inner.record(seen);
    Json(json!({ "access_token": token, "expires_in": 300, "scope": scopes(&pairs).join(" ") }))
        .into_response()
}
