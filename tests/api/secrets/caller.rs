//! A client of a replica's API that keeps every response (status, headers, body)
//! for the leak check, with one helper per call the secrets tests make.

use std::{sync::Mutex, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::API;

/// Calls a replica's API and keeps every response (status, headers, body) for
/// the leak check.
pub(super) struct Caller {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token: String,
    pub(super) subscription: Uuid,
    pub(super) seen: Mutex<Vec<String>>,
}

impl Caller {
    pub(super) fn new(base: &str, token: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            token,
            subscription: Uuid::new_v4(),
            seen: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn registry_path(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/{name}",
            self.subscription
        )
    }

    /// Sends a request (`target` is a path or an absolute URL) with `token` (the
    /// caller's by default); returns the status, the Location header and the body.
    pub(super) async fn send_as(
        &self,
        token: &str,
        method: Method,
        target: &str,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        };
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let mut transcript = format!("{status}\n");
        for (name, value) in response.headers() {
            transcript.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        transcript.push_str(&text);
        self.seen.lock().unwrap().push(transcript);
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, location, body)
    }

    pub(super) async fn send(
        &self,
        method: Method,
        target: &str,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        self.send_as(&self.token, method, target, body).await
    }

    /// PUTs registry `name` bound to `host`, with a login when given.
    pub(super) async fn put_registry(
        &self,
        name: &str,
        host: &str,
        login: Option<(&str, &str)>,
    ) -> u16 {
        let mut properties = json!({ "loginServer": host });
        if let Some((username, password)) = login {
            properties["credentials"] = json!({ "username": username, "password": password });
        }
        let body = json!({ "location": "westus", "sku": { "name": "Standard" }, "properties": properties });
        let path = format!("{}?{API}", self.registry_path(name));
        self.send(Method::PUT, &path, Some(body)).await.0
    }

    /// Creates `target1` on `target` with the write login and `source1` on `source`
    /// with the source login, asserting both are created.
    pub(super) async fn put_logged_in_pair(
        &self,
        (target, write_login): (&str, (&str, &str)),
        (source, source_login): (&str, (&str, &str)),
    ) {
        assert_eq!(
            self.put_registry("target1", target, Some(write_login))
                .await,
            201
        );
        assert_eq!(
            self.put_registry("source1", source, Some(source_login))
                .await,
            201
        );
    }

    /// POSTs importImage on `target1`; returns the status, poll URL and body.
    pub(super) async fn import(&self, body: Value) -> (u16, Option<String>, Value) {
        let path = format!("{}/importImage?{API}", self.registry_path("target1"));
        self.send(Method::POST, &path, Some(body)).await
    }

    /// Queues an import and returns its poll URL.
    pub(super) async fn queue(&self, body: Value) -> String {
        let (status, location, body) = self.import(body).await;
        assert_eq!(status, 202, "{body}");
        location.expect("a poll URL")
    }

    /// Polls until the operation leaves 202.
    pub(super) async fn wait(&self, location: &str) -> (u16, Value) {
        for _ in 0..1200 {
            let (status, _, body) = self.send(Method::GET, location, None).await;
            if status != 202 {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("operation did not finish: {location}");
    }

    /// Everything the API has answered so far.
    pub(super) fn transcript(&self) -> String {
        self.seen.lock().unwrap().join("\n----\n")
    }
}

/// An import of `team/app:v1` from `host` by URI, with a login, tagged `target_tag`.
pub(super) fn from_uri(host: &str, target_tag: &str, (username, password): (&str, &str)) -> Value {
    json!({ "source": { "registryUri": host, "sourceImage": "team/app:v1",
                        "credentials": { "username": username, "password": password } },
            "targetTags": [target_tag] })
}

/// An import of `image` from registry resource `name`.
pub(super) fn from_resource(caller: &Caller, name: &str, image: &str, target_tag: &str) -> Value {
    json!({ "source": { "resourceId": caller.registry_path(name), "sourceImage": image },
            "targetTags": [target_tag] })
}
