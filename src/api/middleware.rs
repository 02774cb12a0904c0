//! Cross-cutting HTTP behaviour: case-insensitive ARM path segments (applied before
//! routing), ARM request-id headers, request tracing with credential headers marked
//! sensitive, and logging internal errors exactly once.

use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, Uri, header},
    middleware::Next,
    response::Response,
};
use tower_http::{
    sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer},
    trace::TraceLayer,
};

use super::error::InternalCause;

/// Keyword segments of ARM paths, in the casing ferry's routes use.
const KEYWORDS: &[&str] = &[
    "subscriptions",
    "resourceGroups",
    "providers",
    "resources",
    "Microsoft.ContainerRegistry",
    "registries",
    "importImage",
    "locations",
    "operationResults",
    "cancel",
    "Microsoft.Authorization",
    "roleAssignments",
    "roleDefinitions",
    "Microsoft.Insights",
    "eventtypes",
    "values",
];

fn canonical(segment: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(segment) && *k != segment)
}

/// Rewrites keyword segments of an ARM path to their canonical casing, leaving the
/// user-chosen segments (subscription, group, name, location, id) alone. ARM paths
/// alternate keyword/value after `/subscriptions/{sub}`, except that a provider
/// namespace follows `providers` directly.
pub(super) fn normalize_path<B>(mut request: Request<B>) -> Request<B> {
    let path = request.uri().path();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if segments
        .first()
        .is_none_or(|s| !s.eq_ignore_ascii_case("subscriptions"))
    {
        return request;
    }
    let mut changed = false;
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    let mut keyword_next = true;
    let mut index = 0;
    while index < segments.len() {
        let segment = segments[index];
        if keyword_next {
            let fixed = canonical(segment);
            changed |= fixed.is_some();
            out.push(fixed.unwrap_or(segment).to_owned());
            if segment.eq_ignore_ascii_case("providers") && index + 1 < segments.len() {
                let namespace = segments[index + 1];
                let fixed = canonical(namespace);
                changed |= fixed.is_some();
                out.push(fixed.unwrap_or(namespace).to_owned());
                // The resource type after the namespace is again a keyword.
                index += 2;
                continue;
            }
        } else {
            out.push(segment.to_owned());
        }
        keyword_next = !keyword_next;
        index += 1;
    }
    if changed {
        let mut text = format!("/{}", out.join("/"));
        if let Some(query) = request.uri().query() {
            text = format!("{text}?{query}");
        }
        let mut parts = request.uri().clone().into_parts();
        if let Ok(path_and_query) = text.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// Headers whose values never reach a log line.
const SENSITIVE_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
];

/// Wraps `routes` in the request trace, with [`SENSITIVE_HEADERS`] marked
/// sensitive (so `Debug` prints them as `Sensitive`) before the trace layer sees a
/// request and before it sees a response.
pub(super) fn traced<S>(routes: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .layer(SetSensitiveResponseHeadersLayer::new(SENSITIVE_HEADERS))
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE_HEADERS))
}

fn echo(headers: &HeaderMap, name: &str) -> Option<HeaderValue> {
    headers.get(name).filter(|v| v.len() <= 200).cloned()
}

/// The `x-ms-request-id` a request will be answered with, for inner layers.
#[derive(Debug, Clone)]
pub(super) struct RequestId(pub String);

/// Adds `x-ms-request-id` and `x-ms-correlation-request-id` (and echoes
/// `x-ms-client-request-id`) on every response, and logs the internal cause of any
/// 5xx once, under the request id a client can quote.
pub(super) async fn arm_headers(mut request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let correlation = echo(request.headers(), "x-ms-correlation-request-id")
        .unwrap_or_else(|| HeaderValue::from_str(&request_id).expect("uuid is a header value"));
    let client_request_id = echo(request.headers(), "x-ms-client-request-id");
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(request_id, %method, path, error = format!("{cause:#}"), "request failed");
    }
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-request-id",
        HeaderValue::from_str(&request_id).expect("uuid is a header value"),
    );
    headers.insert("x-ms-correlation-request-id", correlation);
    if let Some(value) = client_request_id {
        headers.insert("x-ms-client-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn credential_headers_are_sensitive_on_both_sides_of_the_trace() {
        let routes = Router::new().route(
            "/",
            get(|headers: HeaderMap| async move {
                let marked = SENSITIVE_HEADERS
                    .iter()
                    .all(|name| headers.get(name).is_some_and(HeaderValue::is_sensitive));
                let plain = headers.get("x-other").is_some_and(|v| !v.is_sensitive());
                (
                    [(header::SET_COOKIE, "session=abc")],
                    format!("{marked} {plain}"),
                )
            }),
        );
        let mut request = Request::builder().uri("/").header("x-other", "1");
        for name in &SENSITIVE_HEADERS {
            request = request.header(name, "secret-value");
        }
        let response = traced(routes)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.headers()[header::SET_COOKIE].is_sensitive());
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"true true");
    }

    fn normalized(path: &str) -> String {
        let request = Request::builder().uri(path).body(()).unwrap();
        normalize_path(request).uri().to_string()
    }

    #[test]
    fn keywords_take_canonical_case_and_values_do_not() {
        assert_eq!(
            normalized(
                "/SUBSCRIPTIONS/s/resourcegroups/Registries/providers/microsoft.containerregistry/REGISTRIES/MyReg/importimage?api-version=1"
            ),
            "/subscriptions/s/resourceGroups/Registries/providers/Microsoft.ContainerRegistry/registries/MyReg/importImage?api-version=1"
        );
        assert_eq!(
            normalized(
                "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/WestUS/operationresults/ID"
            ),
            "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/WestUS/operationResults/ID"
        );
        assert_eq!(normalized("/healthz"), "/healthz");
    }
}
