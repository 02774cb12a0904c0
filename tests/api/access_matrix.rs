//! The access matrix: every ARM route × every kind of caller (no role, each token
//! role, each role assigned at the subscription, the right group, another group, the
//! registry, another registry; another tenant) on one app. Each case checks the
//! status and error code, that a 403 names the action, the scope and the caller, that
//! refused requests change no registry, assignment or operation, and that no request
//! reaches the source registry (a `FaultProxy` counts) until a worker runs an
//! accepted import. The rules come from `access_model`.

mod allowed;

use ferry::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    access_model::{
        Case, Expect, FAR_REG, NEW_REG, OTHER_REG, REG, REGISTRIES, RG, Route, SUB, Scope,
        VICTIM_SCOPE, callers,
    },
    helpers::access::{Snapshot, assignment_body, mint_as},
    helpers::{API, TestApp, TestRegistry, fault::FaultProxy, images, spawn_app_with},
};

/// One app with three registries, a caller behind every assignment, an assignment
/// to show and delete, and a finished operation on the registry to poll.
struct World {
    app: TestApp,
    /// In front of the source registry: counts every request that reaches it.
    proxy: FaultProxy,
    foreign_tenant: Uuid,
    admin: String,
    victim: Uuid,
    reader_definition: String,
    /// The poll path (with query) of an operation on `REG` that succeeded.
    poll: String,
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why()) }
}

/// The lowercase names of a registry list, sorted.
fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|r| r["name"].as_str().unwrap_or_default().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl World {
    async fn new() -> Self {
        let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
        let proxy = FaultProxy::start(&source.host).await;
        let app = spawn_app_with(0, source, target, &[&proxy.host]).await;
        let image = images::image("amd64", 1, 2_000);
        images::push(&app.source_registry(), "matrix/app", &image, Some("v1")).await;
        for scope in REGISTRIES {
            let (group, name) = (scope.group.unwrap(), scope.registry.unwrap());
            app.create_registry(group, name, &app.target.host, json!({}))
                .await;
        }
        for caller in callers().iter().filter(|c| !c.foreign) {
            if let Some((role, at)) = caller.assigned {
                app.assign(&at.path(app.subscription), role, &caller.id)
                    .await;
            }
        }
        let victim = app
            .assign(
                &VICTIM_SCOPE.path(app.subscription),
                Role::DataReader,
                "victim",
            )
            .await;

        // The other tenant makes our subscription Owner's id Owner of its own
        // subscription: that must not open ours.
        let foreign_tenant = Uuid::new_v4();
        let foreign_sub = format!("/subscriptions/{}", Uuid::new_v4());
        let foreign_admin = mint_as(foreign_tenant, "admin", &[Role::Owner]);
        let owner_definition = app.role_definition_id(Role::Owner).await;
        let (status, body) = app
            .put_assignment(
                &foreign_admin,
                &foreign_sub,
                &Uuid::new_v4().to_string(),
                assignment_body(&owner_definition, "owner@sub"),
            )
            .await;
        assert_eq!(status, 201, "{body}");

        let admin = app.owner_token();
        let response = app
            .import_as(&admin, "rg1", "rega1", import_body(&proxy, "setup"))
            .await;
        assert_eq!(response.status(), 202);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(app.app.worker.run_once().await.unwrap());
        let (status, body) = app.poll_as(&location, &admin).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            !proxy.requests().is_empty(),
            "the setup import used the proxy"
        );
        let poll = location.strip_prefix(&app.base).unwrap().to_owned();
        let reader_definition = app.role_definition_id(Role::DataReader).await;
        Self {
            app,
            proxy,
            foreign_tenant,
            admin,
            victim,
            reader_definition,
            poll,
        }
    }

    fn path(&self, scope: Scope) -> String {
        scope.path(self.app.subscription)
    }

    fn registry_body(&self) -> Value {
        json!({ "location": "westus", "sku": { "name": "Standard" }, "properties": { "loginServer": self.app.target.host } })
    }

    /// The id the assignment PUT of case `n` uses.
    fn case_assignment(n: usize) -> Uuid {
        Uuid::from_u128(0xacce55 << 64 | n as u128)
    }

    /// The request of case `n` on `route`.
    fn request(&self, n: usize, route: Route) -> (Method, String, Option<Value>) {
        let registries = "providers/Microsoft.ContainerRegistry/registries";
        let assignments = "providers/Microsoft.Authorization/roleAssignments";
        let get = |path: String| (Method::GET, path, None);
        match route {
            Route::ShowRegistry => get(format!("{}?{API}", self.path(REG))),
            Route::ReplaceRegistry => (
                Method::PUT,
                format!("{}?{API}", self.path(REG)),
                Some(self.registry_body()),
            ),
            Route::CreateRegistry => (
                Method::PUT,
                format!("{}?{API}", self.path(NEW_REG)),
                Some(self.registry_body()),
            ),
            Route::PatchRegistry => (
                Method::PATCH,
                format!("{}?{API}", self.path(REG)),
                Some(json!({ "tags": { "case": n.to_string() } })),
            ),
            Route::DeleteRegistry => (Method::DELETE, format!("{}?{API}", self.path(REG)), None),
            Route::ListInGroup => get(format!("{}/{registries}?{API}", self.path(RG))),
            Route::ListInSubscription => get(format!("{}/{registries}?{API}", self.path(SUB))),
            Route::Resources => get(format!(
                "{}/resources?$filter=resourceType%20eq%20%27Microsoft.ContainerRegistry%2Fregistries%27&{API}",
                self.path(SUB)
            )),
            Route::ShowSubscription => get(format!("{}?{API}", self.path(SUB))),
            Route::Import => (
                Method::POST,
                format!("{}/importImage?{API}", self.path(REG)),
                Some(import_body(&self.proxy, &format!("case{n}"))),
            ),
            Route::Poll => get(self.poll.clone()),
            Route::PutAssignment(scope) => (
                Method::PUT,
                self.app
                    .assignment_path(&self.path(scope), &Self::case_assignment(n).to_string()),
                Some(assignment_body(&self.reader_definition, "grantee")),
            ),
            Route::ShowAssignment => get(self
                .app
                .assignment_path(&self.path(VICTIM_SCOPE), &self.victim.to_string())),
            Route::DeleteAssignment => (
                Method::DELETE,
                self.app
                    .assignment_path(&self.path(VICTIM_SCOPE), &self.victim.to_string()),
                None,
            ),
            Route::ListAssignments(scope) => {
                get(format!("{}/{assignments}?{API}", self.path(scope)))
            }
            Route::RoleDefinitions => get(format!(
                "{}/providers/Microsoft.Authorization/roleDefinitions?{API}",
                self.path(SUB)
            )),
            Route::ActivityLog => get(format!(
                "{}/providers/Microsoft.Insights/eventtypes/management/values?{API}",
                self.path(SUB)
            )),
        }
    }

    async fn unchanged(&self, before: &Snapshot) -> Result<(), String> {
        let after = self.app.snapshot().await;
        ensure(&after == before, || {
            format!("the request changed state:\nbefore {before:?}\nafter  {after:?}")
        })
    }

    /// Runs case `n`; `Err` says what went wrong.
    async fn run(&self, n: usize, case: &Case) -> Result<(), String> {
        let caller = &case.caller;
        let tenant = if caller.foreign {
            self.foreign_tenant
        } else {
            self.app.tenant
        };
        let token = mint_as(tenant, &caller.id, caller.token_role.as_slice());
        let before = self.app.snapshot().await;
        let contacted = self.proxy.requests().len();
        let (method, path, body) = self.request(n, case.route);
        let response = self.app.request(method, &path, Some(&token), body).await;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.bytes().await.unwrap();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let seen = format!("{status} {answer}");
        ensure(self.proxy.requests().len() == contacted, || {
            format!("the request reached the source registry ({seen})")
        })?;
        match case.expect() {
            Expect::Denied(act, scope) => {
                ensure(
                    status == 403 && answer["error"]["code"] == "AuthorizationFailed",
                    || format!("expected 403 AuthorizationFailed, got {seen}"),
                )?;
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                let scope = format!("'{}'", self.path(scope));
                ensure(
                    message.contains(act.arm_name())
                        && message.contains(&scope)
                        && message.contains(&format!("'{}'", caller.id)),
                    || format!("expected {} over {scope}, got {message}", act.arm_name()),
                )?;
                self.unchanged(&before).await
            }
            Expect::Invisible => {
                let (want, code) = case.route.invisible();
                ensure(status == want, || format!("expected {want}, got {seen}"))?;
                if let Some(code) = code {
                    ensure(answer["error"]["code"] == code, || {
                        format!("expected {code}, got {seen}")
                    })?;
                }
                if want == 200 {
                    self.shows_nothing_of_ours(case.route, &answer)?;
                }
                self.unchanged(&before).await
            }
            Expect::Allowed => {
                self.allowed(n, case, status, &answer, location, &before)
                    .await
            }
        }
    }

    /// A list answered to another tenant holds nothing of this one.
    fn shows_nothing_of_ours(&self, route: Route, answer: &Value) -> Result<(), String> {
        let items = answer["value"].as_array().cloned().unwrap_or_default();
        match route {
            Route::RoleDefinitions => ensure(items.len() == 4, || format!("{answer}")),
            Route::ActivityLog => ensure(
                items
                    .iter()
                    .all(|r| r["tenantId"] == self.foreign_tenant.to_string()),
                || format!("records of our tenant shown: {answer}"),
            ),
            _ => ensure(items.is_empty() && answer["value"].is_array(), || {
                format!("expected an empty list, got {answer}")
            }),
        }
    }
}

/// An import of the matrix image from the proxy, into its own tag.
fn import_body(proxy: &FaultProxy, tag: &str) -> Value {
    json!({
        "source": { "registryUri": proxy.host, "sourceImage": "matrix/app:v1" },
        "targetTags": [format!("matrix/app:{tag}")],
    })
}

#[tokio::test]
async fn every_route_answers_every_caller_by_the_rules() {
    let world = World::new().await;
    let cases = Case::all();
    assert_eq!(cases.len(), 21 * 31);
    let mut failures = Vec::new();
    let mut tally = [0usize; 3];
    for (n, case) in cases.iter().enumerate() {
        let expect = case.expect();
        tally[match expect {
            Expect::Denied(..) => 0,
            Expect::Invisible => 1,
            Expect::Allowed => 2,
        }] += 1;
        if let Err(why) = world.run(n, case).await {
            let tenant = if case.caller.foreign {
                " (other tenant)"
            } else {
                ""
            };
            failures.push(format!(
                "{:?} as {}{tenant}, expecting {expect:?}: {why}",
                case.route, case.caller.id
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The table exercises all three outcomes, and many of each.
    assert!(tally.iter().all(|&count| count > 50), "{tally:?}");
    // Registries the matrix never touched are still there.
    for scope in [OTHER_REG, FAR_REG] {
        let path = format!("{}?{API}", world.path(scope));
        let (status, _) = world.app.call(Method::GET, &path, &world.admin, None).await;
        assert_eq!(status, 200);
    }
}
