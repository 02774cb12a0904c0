//! Scoped authorization. A caller's rights are the roles in its token (tenant-wide)
//! plus the role assignments stored for it at a subscription, a resource group or a
//! registry; an action on a resource is allowed when one of those roles allows it at
//! a scope covering the resource. Role definitions are ferry's four roles.

pub mod store;

use std::{fmt, ops::Deref};

use percent_encoding::percent_decode_str;
use uuid::Uuid;

use crate::{
    api::error::ApiError,
    auth::{Action, Principal, Role},
    registries::RegistryKey,
};

/// A subscription, a resource group in it, or a registry in that group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePath {
    pub subscription: Uuid,
    /// Lowercase: ARM names are case-insensitive.
    pub group: Option<String>,
    /// Lowercase; only with a group.
    pub registry: Option<String>,
}

impl ScopePath {
    pub fn subscription(subscription: Uuid) -> Self {
        Self {
            subscription,
            group: None,
            registry: None,
        }
    }

    pub fn group(subscription: Uuid, group: &str) -> Self {
        Self {
            group: Some(group.to_ascii_lowercase()),
            ..Self::subscription(subscription)
        }
    }

    pub fn registry(key: &RegistryKey) -> Self {
        Self {
            registry: Some(key.name.to_ascii_lowercase()),
            ..Self::group(key.subscription, &key.group)
        }
    }

    /// The scope a request path acts on: as far as it names a subscription,
    /// resource group and registry. Segments are percent-decoded and keywords
    /// matched case-insensitively, exactly as the handlers will read them, so a
    /// check can never be about another resource than the action. `None` outside
    /// a subscription.
    pub fn from_path(path: &str) -> Option<Self> {
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let is = |index: usize, keyword: &str| {
            segments
                .get(index)
                .is_some_and(|s| s.eq_ignore_ascii_case(keyword))
        };
        if !is(0, "subscriptions") {
            return None;
        }
        let mut scope = Self::subscription(Uuid::parse_str(segments.get(1)?).ok()?);
        if is(2, "resourceGroups") {
            scope.group = Some(segments.get(3)?.to_ascii_lowercase());
            if is(4, "providers") && is(5, "Microsoft.ContainerRegistry") && is(6, "registries") {
                scope.registry = segments.get(7).map(|n| n.to_ascii_lowercase());
            }
        }
        Some(scope)
    }

    /// Whether this scope is `other` or contains it.
    pub fn covers(&self, other: &ScopePath) -> bool {
        let within = |mine: &Option<String>, theirs: &Option<String>| match mine {
            None => true,
            Some(mine) => theirs.as_ref() == Some(mine),
        };
        self.subscription == other.subscription
            && within(&self.group, &other.group)
            && within(&self.registry, &other.registry)
    }
}

impl fmt::Display for ScopePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/subscriptions/{}", self.subscription)?;
        if let Some(group) = &self.group {
            write!(f, "/resourceGroups/{group}")?;
        }
        if let Some(registry) = &self.registry {
            write!(
                f,
                "/providers/Microsoft.ContainerRegistry/registries/{registry}"
            )?;
        }
        Ok(())
    }
}

/// A role held at a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: ScopePath,
    pub role: Role,
}

/// The caller of a request with everything it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub grants: Vec<Grant>,
}

impl Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl Caller {
    /// Whether the caller may do `action` on `scope` (and everything in it).
    pub fn may(&self, action: Action, scope: &ScopePath) -> bool {
        self.principal.roles.iter().any(|r| r.allows(action))
            || self
                .grants
                .iter()
                .any(|g| g.role.allows(action) && g.scope.covers(scope))
    }

    /// Whether the caller may do `action` somewhere within `scope` (lists show
    /// what the caller may see).
    pub fn may_within(&self, action: Action, scope: &ScopePath) -> bool {
        self.may(action, scope)
            || self
                .grants
                .iter()
                .any(|g| g.role.allows(action) && scope.covers(&g.scope))
    }

    /// [`Self::may`], as a 403 naming the action and the scope.
    pub fn require(&self, action: Action, scope: &ScopePath) -> Result<(), ApiError> {
        if self.may(action, scope) {
            Ok(())
        } else {
            Err(self.refusal(action, scope))
        }
    }

    /// The 403 for `action` at `scope`.
    pub fn refusal(&self, action: Action, scope: &ScopePath) -> ApiError {
        ApiError::AuthorizationFailed {
            principal: self.principal.id.clone(),
            action: action.arm_name(),
            scope: scope.to_string(),
        }
    }
}

/// One of ferry's role definitions, as `roleDefinitions` lists it.
#[derive(Debug, Clone, Copy)]
pub struct RoleDefinition {
    pub role: Role,
    /// The definition's id: that of the Azure built-in role closest in meaning
    /// (Container Registry Data Importer and Data Reader, AcrPull, Contributor,
    /// Owner), so scripts written for Azure keep working.
    pub id: Uuid,
    pub name: &'static str,
    pub description: &'static str,
    pub actions: &'static [&'static str],
}

/// ferry's role definitions.
pub const ROLE_DEFINITIONS: [RoleDefinition; 4] = [
    RoleDefinition {
        role: Role::DataImporter,
        id: Uuid::from_u128(0x577a9874_89fd_4f24_9dbd_b5034d0ad23a),
        name: "Container Registry Data Importer and Data Reader",
        description: "Import images into registries and read registries and operations.",
        actions: &[
            "Microsoft.ContainerRegistry/registries/importImage/action",
            "Microsoft.ContainerRegistry/registries/read",
        ],
    },
    RoleDefinition {
        role: Role::DataReader,
        id: Uuid::from_u128(0x7f951dda_4ed3_4680_a7ca_43fe172d538d),
        name: "Container Registry Data Reader",
        description: "Read registries and operations, and pull from a registry used as an import source.",
        actions: &["Microsoft.ContainerRegistry/registries/read"],
    },
    RoleDefinition {
        role: Role::Contributor,
        id: Uuid::from_u128(0xb24988ac_6180_42a0_ab88_20f7382dd24c),
        name: "Contributor",
        description: "Create, change and delete registries.",
        actions: &[
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/write",
            "Microsoft.ContainerRegistry/registries/delete",
        ],
    },
    RoleDefinition {
        role: Role::Owner,
        id: Uuid::from_u128(0x8e3af657_a8ff_443c_a75c_2fe8c4bcb635),
        name: "Owner",
        description: "Everything, including managing role assignments and reading the audit log.",
        actions: &["*"],
    },
];

/// The definition of a role.
pub fn definition(role: Role) -> &'static RoleDefinition {
    ROLE_DEFINITIONS
        .iter()
        .find(|d| d.role == role)
        .expect("every role has a definition")
}

/// The role an ARM `roleDefinitionId` (a full id or the bare GUID) names.
pub fn role_of_definition_id(id: &str) -> Option<Role> {
    let guid = id.trim_end_matches('/').rsplit('/').next()?;
    let guid = Uuid::parse_str(guid).ok()?;
    ROLE_DEFINITIONS
        .iter()
        .find(|d| d.id == guid)
        .map(|d| d.role)
}

/// The ARM id of a role definition, as seen from `subscription`.
pub fn definition_arm_id(subscription: Uuid, role: Role) -> String {
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{}",
        definition(role).id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_paths_and_nest() {
        let sub = Uuid::new_v4();
        let registry = ScopePath::from_path(&format!(
            "/subscriptions/{sub}/resourceGroups/Team/providers/Microsoft.ContainerRegistry/registries/Reg/importImage"
        ))
        .unwrap();
        assert_eq!(registry.registry.as_deref(), Some("reg"));
        let group = ScopePath::from_path(&format!(
            "/subscriptions/{sub}/resourceGroups/team/providers/Microsoft.Authorization/roleAssignments/x"
        ))
        .unwrap();
        assert_eq!(group, ScopePath::group(sub, "TEAM"));
        let whole = ScopePath::subscription(sub);
        assert!(whole.covers(&group) && group.covers(&registry) && whole.covers(&registry));
        assert!(!registry.covers(&group) && !group.covers(&whole));
        assert!(!ScopePath::subscription(Uuid::new_v4()).covers(&registry));
        assert!(!ScopePath::group(sub, "other").covers(&registry));
        assert_eq!(ScopePath::from_path("/providers/x"), None);
        let lowered = ScopePath::from_path(&format!(
            "/subscriptions/{sub}/resourcegroups/team/providers/microsoft.containerregistry/registries/reg"
        ));
        assert_eq!(lowered.as_ref(), Some(&registry));
        let encoded =
            ScopePath::from_path(&format!("/subscriptions/{sub}/resourceGroups/te%61m")).unwrap();
        assert_eq!(encoded, ScopePath::group(sub, "team"));
    }

    #[test]
    fn grants_allow_at_and_below_their_scope() {
        let sub = Uuid::new_v4();
        let caller = Caller {
            principal: Principal {
                tenant: crate::auth::TenantId(Uuid::new_v4()),
                id: "alice".into(),
                roles: Default::default(),
                application: None,
            },
            grants: vec![Grant {
                scope: ScopePath::group(sub, "team"),
                role: Role::DataImporter,
            }],
        };
        let key = |group: &str| RegistryKey {
            subscription: sub,
            group: group.into(),
            name: "reg".into(),
        };
        assert!(caller.may(Action::Import, &ScopePath::registry(&key("Team"))));
        assert!(!caller.may(Action::Import, &ScopePath::registry(&key("other"))));
        assert!(!caller.may(Action::Write, &ScopePath::registry(&key("team"))));
        assert!(!caller.may(Action::Read, &ScopePath::subscription(sub)));
        assert!(caller.may_within(Action::Read, &ScopePath::subscription(sub)));
        let refusal = caller.refusal(Action::Write, &ScopePath::group(sub, "team"));
        assert!(
            refusal.to_string().contains("/resourceGroups/team"),
            "{refusal}"
        );
    }

    #[test]
    fn definition_ids_round_trip() {
        for role in Role::ALL {
            let id = definition_arm_id(Uuid::nil(), role);
            assert_eq!(role_of_definition_id(&id), Some(role));
        }
        assert_eq!(role_of_definition_id("not-a-guid"), None);
    }
}
