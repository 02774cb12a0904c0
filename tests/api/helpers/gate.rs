//! A gate in front of a real registry: while it is closed, one kind of request
//! waits there (see [`Hold`]); everything else passes. A test closes it, waits
//! until an import's request is held (the import is then certainly at that step),
//! does its damage — kill a replica, stop Postgres, cancel — and opens it.
//! Deterministic where added latency would only make a race likely.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use tokio::sync::watch;

/// Which requests a closed gate holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Blob GETs, before they reach the registry: an import is mid-copy, its tags
    /// not yet written.
    BlobGets,
    /// The answers to tag PUTs (`PUT /v2/…/manifests/<tag>`), after the registry
    /// wrote the tag: the import's work is done but its worker does not know yet.
    TagPutAnswers,
}

impl Hold {
    fn matches(self, method: &Method, path: &str) -> bool {
        match self {
            Self::BlobGets => method == Method::GET && path.contains("/blobs/"),
            Self::TagPutAnswers => {
                method == Method::PUT
                    && path
                        .rsplit_once("/manifests/")
                        .is_some_and(|(_, reference)| !reference.contains(':'))
            }
        }
    }
}

struct Inner {
    upstream: String,
    host: String,
    hold: Hold,
    http: reqwest::Client,
    open: watch::Sender<bool>,
    arrived: AtomicUsize,
}

/// A running gate (open when started); stops when dropped.
pub struct GateProxy {
    /// `127.0.0.1:port` of the gate (plain HTTP).
    pub host: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GateProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GateProxy {
    /// Starts a gate holding blob GETs in front of the registry at `upstream`
    /// (`host:port`, HTTP).
    pub async fn start(upstream: &str) -> Self {
        Self::holding(upstream, Hold::BlobGets).await
    }

    /// Starts a gate holding `hold` in front of the registry at `upstream`.
    pub async fn holding(upstream: &str, hold: Hold) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let inner = Arc::new(Inner {
            upstream: upstream.to_owned(),
            host: host.clone(),
            hold,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
            open: watch::channel(true).0,
            arrived: AtomicUsize::new(0),
        });
        let router = Router::new().fallback(forward).with_state(inner.clone());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { host, inner, task }
    }

    /// Held requests from now on wait.
    pub fn close(&self) {
        self.inner.open.send_replace(false);
    }

    /// Lets every waiting and later request through.
    pub fn open(&self) {
        self.inner.open.send_replace(true);
    }

    /// Requests of the held kind that have arrived so far (held or not).
    pub fn arrived(&self) -> usize {
        self.inner.arrived.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests of the held kind have arrived in total.
    pub async fn wait_arrived(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.arrived() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} {:?} requests reached the gate within {within:?}",
                self.arrived(),
                self.inner.hold
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Inner {
    /// Counts a held request's arrival and waits until the gate is open.
    async fn pass(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        // The sender lives as long as `self`.
        let _ = open.wait_for(|open| *open).await;
    }
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let held = inner.hold.matches(&parts.method, &path);
    if held && inner.hold == Hold::BlobGets {
        inner.pass().await;
    }
    let mut upstream = inner.http.request(
        parts.method.clone(),
        format!("http://{}{path}", inner.upstream),
    );
    for (name, value) in &parts.headers {
        let skip =
            name == header::HOST || name == header::CONNECTION || name == header::TRANSFER_ENCODING;
        if !skip {
            upstream = upstream.header(name, value);
        }
    }
    if matches!(parts.method, Method::PUT | Method::PATCH | Method::POST) {
        upstream = upstream.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    if held && inner.hold == Hold::TagPutAnswers {
        inner.pass().await;
    }
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        if name == header::LOCATION {
            // Upload sessions continue through the gate.
            let text = value.to_str().unwrap_or_default().replace(
                &format!("http://{}", inner.upstream),
                &format!("http://{}", inner.host),
            );
            response = response.header(name, text);
        } else {
            response = response.header(name, value);
        }
    }
    let body = answer
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    response.body(Body::from_stream(body)).unwrap()
}
