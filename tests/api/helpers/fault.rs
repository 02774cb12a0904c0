//! A fault-injecting reverse proxy on 127.0.0.1 in front of a real registry. It
//! streams bodies both ways, rewrites `Location` to point at itself, records every
//! request, and misbehaves on demand per request class: cut blob bodies, 429/503
//! answers, corrupted bytes, ignored `Range`, added latency.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `GET /v2/…/blobs/<digest>`
    BlobGet,
    /// `GET /v2/…/manifests/<ref>`
    ManifestGet,
    /// Any HEAD.
    Head,
    /// POST and PUT under `/v2/…/blobs/uploads/`.
    Upload,
    /// PATCH under `/v2/…/blobs/uploads/` (a chunk of a chunked upload).
    Chunk,
    /// Anything else.
    Other,
}

impl Class {
    fn of(method: &Method, path: &str) -> Self {
        match *method {
            Method::HEAD => Self::Head,
            Method::GET if path.contains("/blobs/") => Self::BlobGet,
            Method::GET if path.contains("/manifests/") => Self::ManifestGet,
            Method::PATCH if path.contains("/blobs/uploads") => Self::Chunk,
            Method::POST | Method::PUT if path.contains("/blobs/uploads") => Self::Upload,
            _ => Self::Other,
        }
    }
}

/// A misbehaviour.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The first body of the class longer than this many bytes stops after them
    /// (the connection is dropped mid-body); later bodies flow whole. The client
    /// may receive somewhat fewer bytes: hyper drops what it had not yet flushed.
    CutAfter(u64),
    /// The first `times` requests of the class are answered with `status` (and
    /// `Retry-After` when given) without reaching the registry.
    Status {
        status: u16,
        times: usize,
        retry_after: Option<u64>,
    },
    /// Every body of the class has its first byte flipped (length unchanged).
    Corrupt,
    /// `Range` is stripped, so the registry answers 200 with the whole body.
    IgnoreRange,
    /// Each request of the class waits this long before it is forwarded.
    Latency(Duration),
    /// Every request of the class is answered with this status and header, without
    /// reaching the registry (a redirect's `Location`, a 401's `WWW-Authenticate`).
    Respond {
        status: u16,
        header: header::HeaderName,
        value: String,
    },
    /// Every request of the class is redirected (307) to the same path and query
    /// under this base URL, as registries send blob reads to a CDN.
    Redirect(String),
}

impl Fault {
    /// `429 Too Many Requests` with `Retry-After: 1`, `times` times.
    pub fn throttle(times: usize) -> Self {
        Self::Status {
            status: 429,
            times,
            retry_after: Some(1),
        }
    }

    /// `503 Service Unavailable`, `times` times.
    pub fn unavailable(times: usize) -> Self {
        Self::Status {
            status: 503,
            times,
            retry_after: None,
        }
    }
}

/// One request the proxy answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query, as the client sent them.
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// The fault applied to it, if any (`"cut"`, `"status"`, `"corrupt"`, …).
    pub fault: Option<&'static str>,
    /// When the request arrived (before any injected latency).
    pub at: Instant,
}

struct Inner {
    upstream: String,
    host: String,
    http: reqwest::Client,
    faults: Mutex<Vec<(Class, Fault)>>,
    seen: Mutex<Vec<Seen>>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:port` of the proxy (reach it over plain HTTP).
    pub host: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of the registry at `upstream` (`host:port`, HTTP).
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        let inner = Arc::new(Inner {
            upstream: upstream.to_owned(),
            host: host.clone(),
            http,
            faults: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(forward).with_state(inner.clone());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { host, inner, task }
    }

    /// Adds a fault for requests of `class`.
    pub fn inject(&self, class: Class, fault: Fault) {
        self.inner.faults.lock().unwrap().push((class, fault));
    }

    /// Every request answered so far, in the order their answers started.
    pub fn requests(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

/// What the faults decided for one request.
#[derive(Default)]
struct Plan {
    answer: Option<(u16, Option<u64>)>,
    cut: bool,
    corrupt: bool,
    ignore_range: bool,
    latency: Duration,
    respond: Option<(u16, header::HeaderName, String)>,
    redirect: Option<String>,
}

impl Inner {
    /// Picks the faults for a request, counting down injected statuses (a cut is
    /// only consumed once a long enough body shows up: `take_cut`).
    fn plan(&self, class: Class) -> Plan {
        let mut plan = Plan::default();
        for (c, fault) in self.faults.lock().unwrap().iter_mut() {
            if *c != class {
                continue;
            }
            match fault {
                Fault::Status {
                    status,
                    times,
                    retry_after,
                } if *times > 0 && plan.answer.is_none() => {
                    *times -= 1;
                    plan.answer = Some((*status, *retry_after));
                }
                Fault::Status { .. } => {}
                Fault::CutAfter(_) => plan.cut = true,
                Fault::Corrupt => plan.corrupt = true,
                Fault::IgnoreRange => plan.ignore_range = true,
                Fault::Latency(by) => plan.latency += *by,
                Fault::Respond {
                    status,
                    header,
                    value,
                } => plan.respond = Some((*status, header.clone(), value.clone())),
                Fault::Redirect(base) => plan.redirect = Some(base.clone()),
            }
        }
        plan
    }

    /// Consumes the cut fault of `class` if a body of `length` bytes qualifies.
    fn take_cut(&self, class: Class, length: u64) -> Option<u64> {
        let mut faults = self.faults.lock().unwrap();
        let index = faults
            .iter()
            .position(|(c, f)| *c == class && matches!(f, Fault::CutAfter(n) if length > *n))?;
        match faults.remove(index).1 {
            Fault::CutAfter(n) => Some(n),
            _ => unreachable!("position matched a cut"),
        }
    }

    fn record(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
    }
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let class = Class::of(&parts.method, &path);
    let range = header_text(&parts.headers, header::RANGE);
    let plan = inner.plan(class);
    let mut seen = Seen {
        method: parts.method.clone(),
        path: path.clone(),
        range,
        status: 0,
        fault: None,
        at: Instant::now(),
    };
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
        seen.fault = Some("latency");
    }
    if let Some((status, retry_after)) = plan.answer {
        seen.status = status;
        seen.fault = Some("status");
        inner.record(seen);
        let code = match status {
            429 => "TOOMANYREQUESTS",
            416 => "BLOB_UPLOAD_INVALID",
            _ => "UNAVAILABLE",
        };
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"injected fault"}}]}}"#);
        let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return response;
    }

    let respond = plan.respond.or_else(|| {
        plan.redirect
            .map(|base| (307, header::LOCATION, format!("{base}{path}")))
    });
    if let Some((status, name, value)) = respond {
        seen.status = status;
        seen.fault = Some("respond");
        inner.record(seen);
        let mut response = StatusCode::from_u16(status).unwrap().into_response();
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
        return response;
    }

    let url = format!("http://{}{path}", inner.upstream);
    let mut upstream = inner.http.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        let skip = name == header::HOST
            || name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || (plan.ignore_range && name == header::RANGE);
        if !skip {
            upstream = upstream.header(name, value);
        }
    }
    if plan.ignore_range && seen.range.is_some() {
        seen.fault = Some("ignore-range");
    }
    if matches!(parts.method, Method::PUT | Method::PATCH | Method::POST) {
        upstream = upstream.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(error) => {
            seen.status = 502;
            inner.record(seen);
            return (StatusCode::BAD_GATEWAY, error.to_string()).into_response();
        }
    };
    seen.status = answer.status().as_u16();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        if name == header::LOCATION {
            let text = value.to_str().unwrap_or_default().replace(
                &format!("http://{}", inner.upstream),
                &format!("http://{}", inner.host),
            );
            response = response.header(name, text);
        } else {
            response = response.header(name, value);
        }
    }
    let length = answer.content_length().unwrap_or(0);
    let mut body: ByteStream = Box::pin(
        answer
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    );
    if plan.corrupt && parts.method == Method::GET && length > 0 {
        seen.fault = Some("corrupt");
        body = Box::pin(flip_first_byte(body));
    }
    if plan.cut && parts.method == Method::GET {
        if let Some(after) = inner.take_cut(class, length) {
            seen.fault = Some("cut");
            body = Box::pin(cut(body, after));
        }
    }
    inner.record(seen);
    response.body(Body::from_stream(body)).unwrap()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Passes `after` bytes, then fails once (which drops the connection mid-body).
fn cut(body: ByteStream, after: u64) -> impl Stream<Item = std::io::Result<Bytes>> {
    stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, sent) = state?;
        if sent >= after {
            return Some((Err(std::io::Error::other("injected cut")), None));
        }
        let mut chunk = match body.next().await? {
            Ok(chunk) => chunk,
            Err(error) => return Some((Err(error), None)),
        };
        chunk.truncate((after - sent) as usize);
        let sent = sent + chunk.len() as u64;
        Some((Ok(chunk), Some((body, sent))))
    })
}

/// Flips the first byte of the first non-empty chunk.
fn flip_first_byte(body: ByteStream) -> impl Stream<Item = std::io::Result<Bytes>> {
    let mut done = false;
    body.map(move |chunk| {
        let chunk = chunk?;
        if done || chunk.is_empty() {
            return Ok(chunk);
        }
        done = true;
        let mut bytes = chunk.to_vec();
        bytes[0] ^= 0xff;
        Ok(Bytes::from(bytes))
    })
}
