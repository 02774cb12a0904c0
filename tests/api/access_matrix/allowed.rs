//! What an allowed request of the matrix must have done, and how the runner puts
//! the world back for the next case.

use reqwest::Method;
use serde_json::{Value, json};

use super::{World, ensure, names};
use crate::{
    access_model::{Act, Case, NEW_REG, REG, REGISTRIES, Route, VICTIM_SCOPE, callers},
    helpers::API,
    helpers::access::{Snapshot, assignment_body, mint_as},
};

impl World {
    /// Puts the victim assignment back under its own id.
    async fn restore_victim(&self) -> Result<(), String> {
        let (status, body) = self
            .app
            .put_assignment(
                &self.admin,
                &self.path(VICTIM_SCOPE),
                &self.victim.to_string(),
                assignment_body(&self.reader_definition, "victim"),
            )
            .await;
        ensure(status == 201, || format!("restore victim: {status} {body}"))
    }

    /// Checks an allowed request did its job, and puts the world back.
    pub(super) async fn allowed(
        &self,
        n: usize,
        case: &Case,
        status: u16,
        answer: &Value,
        location: Option<String>,
        before: &Snapshot,
    ) -> Result<(), String> {
        let caller = &case.caller;
        let seen = format!("{status} {answer}");
        let expect = |ok: bool| ensure(ok, || format!("unexpected answer {seen}"));
        let listed = |group: Option<&str>| {
            let mut want: Vec<String> = REGISTRIES
                .iter()
                .filter(|r| group.is_none_or(|g| r.group == Some(g)))
                .filter(|r| caller.may(Act::Read, **r))
                .map(|r| r.registry.unwrap().to_owned())
                .collect();
            want.sort();
            want
        };
        match case.route {
            Route::ShowRegistry => expect(status == 200 && answer["name"] == "rega1")?,
            Route::ReplaceRegistry => {
                return expect(
                    status == 200 && answer["systemData"]["lastModifiedBy"] == caller.id.as_str(),
                );
            }
            Route::PatchRegistry => {
                let tag = n.to_string();
                return expect(status == 200 && answer["tags"]["case"] == tag.as_str());
            }
            Route::CreateRegistry => {
                expect(status == 201 && answer["name"] == "newreg1")?;
                let path = format!("{}?{API}", self.path(NEW_REG));
                let (deleted, _) = self
                    .app
                    .call(Method::DELETE, &path, &self.admin, None)
                    .await;
                ensure(deleted == 200, || format!("cleanup delete: {deleted}"))?;
            }
            Route::DeleteRegistry => {
                expect(status == 200)?;
                let path = format!("{}?{API}", self.path(REG));
                let (gone, _) = self.app.call(Method::GET, &path, &self.admin, None).await;
                ensure(gone == 404, || {
                    format!("deleted registry still answers {gone}")
                })?;
                let (restored, _) = self
                    .app
                    .put_registry_as(
                        &self.admin,
                        "rg1",
                        "rega1",
                        &self.app.target.host,
                        json!({}),
                    )
                    .await;
                ensure(restored == 201, || format!("restore: {restored}"))?;
                // Grants at a registry go with it: give them back, the victim
                // under its own id.
                for caller in callers().iter().filter(|c| !c.foreign) {
                    if let Some((role, at)) = caller.assigned.filter(|(_, at)| *at == REG) {
                        self.app.assign(&self.path(at), role, &caller.id).await;
                    }
                }
                return self.restore_victim().await;
            }
            Route::ListInGroup => {
                expect(status == 200)?;
                ensure(names(answer) == listed(Some("rg1")), || {
                    format!("expected {:?}, got {seen}", listed(Some("rg1")))
                })?;
            }
            Route::ListInSubscription | Route::Resources => {
                expect(status == 200)?;
                ensure(names(answer) == listed(None), || {
                    format!("expected {:?}, got {seen}", listed(None))
                })?;
            }
            Route::ShowSubscription => expect(
                status == 200 && answer["subscriptionId"] == self.app.subscription.to_string(),
            )?,
            Route::Import => {
                expect(status == 202)?;
                let location = location.ok_or("no Location")?;
                ensure(
                    self.app.operation_count().await as usize
                        == serde_json::from_str::<Vec<Value>>(&before.operations)
                            .unwrap()
                            .len()
                            + 1,
                    || "no operation queued".to_owned(),
                )?;
                let contacted = self.proxy.requests().len();
                ensure(self.app.app.worker.run_once().await.unwrap(), || {
                    "nothing to run".into()
                })?;
                let token = mint_as(self.app.tenant, &caller.id, caller.token_role.as_slice());
                let (polled, body) = self.app.poll_as(&location, &token).await;
                ensure(polled == 200 && body["status"] == "Succeeded", || {
                    format!("poll after the run: {polled} {body}")
                })?;
                return ensure(self.proxy.requests().len() > contacted, || {
                    "the worker never reached the source".into()
                });
            }
            Route::Poll => expect(status == 200 && answer["status"] == "Succeeded")?,
            Route::PutAssignment(scope) => {
                expect(
                    status == 201
                        && answer["properties"]["principalId"] == "grantee"
                        && answer["properties"]["scope"] == self.path(scope),
                )?;
                let id = Self::case_assignment(n).to_string();
                let (deleted, _) = self
                    .app
                    .delete_assignment(&self.admin, &self.path(scope), &id)
                    .await;
                ensure(deleted == 200, || format!("cleanup delete: {deleted}"))?;
            }
            Route::ShowAssignment => {
                expect(status == 200 && answer["name"] == self.victim.to_string())?
            }
            Route::ListAssignments(scope) => {
                expect(status == 200)?;
                let shown = answer["value"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|a| a["name"] == self.victim.to_string()));
                let visible = VICTIM_SCOPE.covers(scope) || caller.may(Act::Read, VICTIM_SCOPE);
                ensure(shown == visible, || {
                    format!("victim shown: {shown}, expected {visible}: {seen}")
                })?;
            }
            Route::DeleteAssignment => {
                expect(status == 200 && answer["name"] == self.victim.to_string())?;
                self.restore_victim().await?;
            }
            Route::RoleDefinitions => {
                expect(status == 200 && answer["value"].as_array().is_some_and(|v| v.len() == 4))?
            }
            Route::ActivityLog => expect(
                status == 200
                    && answer["value"].as_array().is_some_and(|v| {
                        !v.is_empty()
                            && v.iter()
                                .all(|r| r["tenantId"] == self.app.tenant.to_string())
                    }),
            )?,
        }
        // Reads, and writes the runner undid, leave everything as it was.
        self.unchanged(before).await
    }
}
