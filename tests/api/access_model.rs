//! The access matrix's model: the scopes of the test world, the callers (token roles,
//! assignments at every kind of scope, another tenant), every ARM route with the
//! checks it must make, and the rules the brief states for deciding them. The runner
//! lives in `access_matrix`.

use ferry::auth::Role;
use uuid::Uuid;

/// A scope in the test subscription: a resource group and a registry, lowercase as
/// ferry prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub group: Option<&'static str>,
    pub registry: Option<&'static str>,
}

pub const SUB: Scope = Scope {
    group: None,
    registry: None,
};
/// The group of the registries the routes act on.
pub const RG: Scope = Scope {
    group: Some("rg1"),
    registry: None,
};
pub const OTHER_RG: Scope = Scope {
    group: Some("rg2"),
    registry: None,
};
/// The registry the routes act on.
pub const REG: Scope = Scope {
    group: Some("rg1"),
    registry: Some("rega1"),
};
/// Another registry in the same group.
pub const OTHER_REG: Scope = Scope {
    group: Some("rg1"),
    registry: Some("regb1"),
};
/// The registry in the other group.
pub const FAR_REG: Scope = Scope {
    group: Some("rg2"),
    registry: Some("regc1"),
};
/// The registry the create route makes (and the runner removes again).
pub const NEW_REG: Scope = Scope {
    group: Some("rg1"),
    registry: Some("newreg1"),
};
/// Every registry of the world, as lists should show them.
pub const REGISTRIES: [Scope; 3] = [REG, OTHER_REG, FAR_REG];

impl Scope {
    /// Whether this scope is `other` or contains it.
    pub fn covers(self, other: Scope) -> bool {
        self.group.is_none_or(|g| other.group == Some(g))
            && self.registry.is_none_or(|r| other.registry == Some(r))
    }

    /// The ARM path of the scope in subscription `sub`.
    pub fn path(self, sub: Uuid) -> String {
        let mut path = format!("/subscriptions/{sub}");
        if let Some(group) = self.group {
            path += &format!("/resourceGroups/{group}");
        }
        if let Some(registry) = self.registry {
            path += &format!("/providers/Microsoft.ContainerRegistry/registries/{registry}");
        }
        path
    }
}

/// What a request does, with the ARM action a 403 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Read,
    Write,
    Delete,
    Import,
    ManageAccess,
    ReadAuditLog,
}

impl Act {
    pub fn arm_name(self) -> &'static str {
        match self {
            Self::Read => "Microsoft.ContainerRegistry/registries/read",
            Self::Write => "Microsoft.ContainerRegistry/registries/write",
            Self::Delete => "Microsoft.ContainerRegistry/registries/delete",
            Self::Import => "Microsoft.ContainerRegistry/registries/importImage/action",
            Self::ManageAccess => "Microsoft.Authorization/roleAssignments/write",
            Self::ReadAuditLog => "Microsoft.Insights/eventtypes/values/read",
        }
    }
}

/// The brief's role table.
pub fn role_allows(role: Role, act: Act) -> bool {
    match role {
        Role::DataImporter => matches!(act, Act::Import | Act::Read),
        Role::DataReader => act == Act::Read,
        Role::Contributor => matches!(act, Act::Read | Act::Write | Act::Delete),
        Role::Owner => true,
    }
}

pub fn short(role: Role) -> &'static str {
    match role {
        Role::DataImporter => "importer",
        Role::DataReader => "reader",
        Role::Contributor => "contributor",
        Role::Owner => "owner",
    }
}

/// A principal calling the routes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal id (token `oid`/`sub`).
    pub id: String,
    /// Whether its token is for the other tenant.
    pub foreign: bool,
    pub token_role: Option<Role>,
    /// A role assigned to it in the test subscription.
    pub assigned: Option<(Role, Scope)>,
}

impl Caller {
    /// Whether the caller's rights cover `act` on all of `scope`.
    pub fn may(&self, act: Act, scope: Scope) -> bool {
        self.token_role.is_some_and(|r| role_allows(r, act))
            || self
                .assigned
                .is_some_and(|(r, at)| role_allows(r, act) && at.covers(scope))
    }

    /// Whether the caller may do `act` somewhere within `scope`.
    pub fn may_within(&self, act: Act, scope: Scope) -> bool {
        self.may(act, scope)
            || self
                .assigned
                .is_some_and(|(r, at)| role_allows(r, act) && scope.covers(at))
    }
}

/// Where assigned callers hold their role, with the label in their id.
pub const PLACES: [(&str, Scope); 5] = [
    ("sub", SUB),
    ("rg1", RG),
    ("rg2", OTHER_RG),
    ("rega1", REG),
    ("regb1", OTHER_REG),
];

/// Every caller: no role, each token role, each role at each place; and for the
/// other tenant no role, each token role, and the id of our subscription Owner
/// (which is Owner of a subscription of its own tenant).
pub fn callers() -> Vec<Caller> {
    let caller = |id: String, foreign, token_role, assigned| Caller {
        id,
        foreign,
        token_role,
        assigned,
    };
    let mut all = vec![caller("nobody".into(), false, None, None)];
    for role in Role::ALL {
        all.push(caller(
            format!("token-{}", short(role)),
            false,
            Some(role),
            None,
        ));
    }
    for role in Role::ALL {
        for (label, scope) in PLACES {
            let id = format!("{}@{label}", short(role));
            all.push(caller(id, false, None, Some((role, scope))));
        }
    }
    all.push(caller("stranger".into(), true, None, None));
    for role in Role::ALL {
        all.push(caller(
            format!("stranger-{}", short(role)),
            true,
            Some(role),
            None,
        ));
    }
    all.push(caller("owner@sub".into(), true, None, None));
    all
}

/// One authorization check a route must make, in order.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// The caller may do the action somewhere within the scope (lists, and the
    /// extractor before a handler narrows).
    Within(Act, Scope),
    /// The caller may do the action on all of the scope.
    On(Act, Scope),
}

/// The ARM routes of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ShowRegistry,
    ReplaceRegistry,
    CreateRegistry,
    PatchRegistry,
    ListInGroup,
    ListInSubscription,
    Resources,
    ShowSubscription,
    Import,
    Poll,
    PutAssignment(Scope),
    ShowAssignment,
    ListAssignments(Scope),
    DeleteAssignment,
    RoleDefinitions,
    ActivityLog,
    DeleteRegistry,
}

/// Every route; deleting the registry comes last (its restored copy has a new id,
/// which detaches the operations the poll route reads).
pub const ROUTES: [Route; 21] = [
    Route::ShowRegistry,
    Route::ReplaceRegistry,
    Route::CreateRegistry,
    Route::PatchRegistry,
    Route::ListInGroup,
    Route::ListInSubscription,
    Route::Resources,
    Route::ShowSubscription,
    Route::Import,
    Route::Poll,
    Route::PutAssignment(SUB),
    Route::PutAssignment(RG),
    Route::PutAssignment(REG),
    Route::ShowAssignment,
    Route::ListAssignments(SUB),
    Route::ListAssignments(RG),
    Route::ListAssignments(REG),
    Route::DeleteAssignment,
    Route::RoleDefinitions,
    Route::ActivityLog,
    Route::DeleteRegistry,
];

/// The scope of the assignment the show and delete routes act on.
pub const VICTIM_SCOPE: Scope = REG;

impl Route {
    /// The checks, in the order ferry makes them (the first failing one is named).
    pub fn checks(self) -> Vec<Check> {
        use Check::{On, Within};
        match self {
            Self::ShowRegistry => vec![Within(Act::Read, REG)],
            Self::ReplaceRegistry | Self::PatchRegistry => vec![Within(Act::Write, REG)],
            Self::DeleteRegistry => vec![Within(Act::Delete, REG)],
            Self::CreateRegistry => vec![Within(Act::Write, NEW_REG)],
            Self::ListInGroup => vec![Within(Act::Read, RG)],
            Self::ListInSubscription | Self::Resources => vec![Within(Act::Read, SUB)],
            Self::ShowSubscription | Self::RoleDefinitions => vec![],
            Self::Import => vec![Within(Act::Import, REG)],
            // The poll path names only the subscription; the operation's target
            // registry decides.
            Self::Poll => vec![Within(Act::Read, SUB), On(Act::Read, REG)],
            Self::PutAssignment(scope) => {
                vec![
                    Within(Act::ManageAccess, scope),
                    On(Act::ManageAccess, scope),
                ]
            }
            Self::ShowAssignment => {
                vec![Within(Act::Read, VICTIM_SCOPE), On(Act::Read, VICTIM_SCOPE)]
            }
            Self::ListAssignments(scope) => vec![Within(Act::Read, scope)],
            Self::DeleteAssignment => vec![
                Within(Act::ManageAccess, VICTIM_SCOPE),
                On(Act::ManageAccess, VICTIM_SCOPE),
            ],
            Self::ActivityLog => vec![Within(Act::ReadAuditLog, SUB), On(Act::ReadAuditLog, SUB)],
        }
    }

    /// The answer to another tenant's caller that passes the checks: its tenant
    /// cannot see ours, so a read is a 404 (lists are empty, as for a subscription
    /// nobody owns) and a delete finds nothing (204).
    pub fn invisible(self) -> (u16, Option<&'static str>) {
        match self {
            Self::ShowRegistry | Self::PatchRegistry | Self::Import => {
                (404, Some("ResourceNotFound"))
            }
            // At a registry scope the registry is what another tenant cannot find.
            Self::PutAssignment(Scope {
                registry: Some(_), ..
            }) => (404, Some("ResourceNotFound")),
            Self::ReplaceRegistry
            | Self::CreateRegistry
            | Self::ShowSubscription
            | Self::PutAssignment(_)
            | Self::ActivityLog => (404, Some("SubscriptionNotFound")),
            Self::Poll => (404, Some("OperationNotFound")),
            Self::ShowAssignment => (404, Some("RoleAssignmentNotFound")),
            Self::DeleteAssignment | Self::DeleteRegistry => (204, None),
            Self::ListInGroup
            | Self::ListInSubscription
            | Self::Resources
            | Self::ListAssignments(_)
            | Self::RoleDefinitions => (200, None),
        }
    }
}

/// What a case must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 403 AuthorizationFailed naming this action and scope; nothing changes.
    Denied(Act, Scope),
    /// Another tenant passed the checks: [`Route::invisible`]; nothing changes.
    Invisible,
    /// The route works (each route knows what that means).
    Allowed,
}

/// One request of the matrix: a route called by a caller.
#[derive(Debug, Clone)]
pub struct Case {
    pub route: Route,
    pub caller: Caller,
}

impl Case {
    /// Every route × every caller.
    pub fn all() -> Vec<Case> {
        let callers = callers();
        ROUTES
            .iter()
            .flat_map(|&route| {
                callers.iter().map(move |caller| Case {
                    route,
                    caller: caller.clone(),
                })
            })
            .collect()
    }

    pub fn expect(&self) -> Expect {
        let refused = self
            .route
            .checks()
            .into_iter()
            .find_map(|check| match check {
                Check::Within(act, scope) if !self.caller.may_within(act, scope) => {
                    Some((act, scope))
                }
                Check::On(act, scope) if !self.caller.may(act, scope) => Some((act, scope)),
                _ => None,
            });
        match refused {
            Some((act, scope)) => Expect::Denied(act, scope),
            None if self.caller.foreign => Expect::Invisible,
            None => Expect::Allowed,
        }
    }
}
