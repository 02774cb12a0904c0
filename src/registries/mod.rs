//! Registry resources: ARM `Microsoft.ContainerRegistry/registries` bound to real OCI
//! registries. The PUT/PATCH bodies, their validation, and the ARM JSON a client sees.

pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::operations::spec::{Credentials, CredentialsBody, parse_login_server};

/// The ARM resource type ferry serves.
pub const RESOURCE_TYPE: &str = "Microsoft.ContainerRegistry/registries";

/// A service tier; only managed SKUs exist (`az acr import` insists on one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sku {
    Basic,
    Standard,
    Premium,
}

impl Sku {
    fn parse(text: &str) -> Option<Self> {
        [Self::Basic, Self::Standard, Self::Premium]
            .into_iter()
            .find(|sku| sku.as_str().eq_ignore_ascii_case(text))
    }

    /// The ARM spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "Basic",
            Self::Standard => "Standard",
            Self::Premium => "Premium",
        }
    }
}

/// Whether the registry accepts traffic from public networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PublicNetworkAccess {
    #[default]
    Enabled,
    Disabled,
}

/// Whether trusted services may bypass network rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NetworkRuleBypassOptions {
    #[default]
    AzureServices,
    None,
}

/// `properties.networkRuleSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSet {
    pub default_action: DefaultAction,
    #[serde(default)]
    pub ip_rules: Vec<IpRule>,
}

impl Default for NetworkRuleSet {
    fn default() -> Self {
        Self {
            default_action: DefaultAction::Allow,
            ip_rules: Vec::new(),
        }
    }
}

/// `networkRuleSet.defaultAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultAction {
    Allow,
    Deny,
}

/// One `networkRuleSet.ipRules` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRule {
    pub action: String,
    pub value: String,
}

/// `properties.policies`; ferry enforces the export policy on import (later issue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    #[serde(default)]
    pub export_policy: ExportPolicy,
}

/// `policies.exportPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPolicy {
    pub status: PolicyStatus,
}

/// enabled / disabled, lowercase as ARM spells policy states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyStatus {
    #[default]
    Enabled,
    Disabled,
}

/// The user-settable properties, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistryProperties {
    pub public_network_access: PublicNetworkAccess,
    pub network_rule_bypass_options: NetworkRuleBypassOptions,
    pub network_rule_set: NetworkRuleSet,
    pub policies: Policies,
    pub admin_user_enabled: bool,
    pub anonymous_pull_enabled: bool,
}

/// PUT and PATCH bodies (PATCH leaves out what it does not change).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryBody {
    pub location: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub sku: Option<SkuBody>,
    pub properties: Option<PropertiesBody>,
}

/// `sku` in a body.
#[derive(Debug, Default, Deserialize)]
pub struct SkuBody {
    pub name: Option<String>,
}

/// `properties` in a body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertiesBody {
    pub login_server: Option<String>,
    pub credentials: Option<CredentialsBody>,
    pub public_network_access: Option<PublicNetworkAccess>,
    pub network_rule_bypass_options: Option<NetworkRuleBypassOptions>,
    pub network_rule_set: Option<NetworkRuleSet>,
    pub policies: Option<Policies>,
    pub admin_user_enabled: Option<bool>,
    pub anonymous_pull_enabled: Option<bool>,
}

/// A validated change to a registry, from a PUT (complete) or PATCH (partial).
#[derive(Debug, Default)]
pub struct RegistryChange {
    pub location: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub sku: Option<Sku>,
    pub login_server: Option<String>,
    pub credentials: Option<Credentials>,
    pub properties: RegistryProperties,
}

/// A field that failed validation: (JSON path, message).
pub type FieldError = (&'static str, String);

impl RegistryBody {
    /// Validates a PUT: location, sku and loginServer are required; missing
    /// properties take their defaults.
    pub fn into_put(self) -> Result<RegistryChange, FieldError> {
        let location = self
            .location
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let location = location.ok_or(("location", "The location is required.".to_owned()))?;
        if self.sku.as_ref().and_then(|s| s.name.as_ref()).is_none() {
            return Err((
                "sku.name",
                "The sku name is required: Basic, Standard or Premium.".to_owned(),
            ));
        }
        let props = self.properties.as_ref();
        if props.and_then(|p| p.login_server.as_ref()).is_none() {
            return Err((
                "properties.loginServer",
                "The loginServer (host[:port] of the backing registry) is required.".to_owned(),
            ));
        }
        let location = location.to_owned();
        let mut change = self.into_patch(&RegistryProperties::default())?;
        change.location = Some(location);
        change.tags.get_or_insert_with(BTreeMap::new);
        Ok(change)
    }

    /// Validates a PATCH against the current properties.
    pub fn into_patch(self, current: &RegistryProperties) -> Result<RegistryChange, FieldError> {
        if let Some(tags) = &self.tags {
            if tags.len() > 50
                || tags
                    .iter()
                    .any(|(k, v)| k.is_empty() || k.len() > 512 || v.len() > 256)
            {
                return Err((
                    "tags",
                    "At most 50 tags, names 1-512 and values up to 256 characters.".to_owned(),
                ));
            }
        }
        let sku = match self.sku.and_then(|s| s.name) {
            Some(name) => Some(Sku::parse(&name).ok_or((
                "sku.name",
                format!("The sku '{name}' is invalid: use Basic, Standard or Premium."),
            ))?),
            None => None,
        };
        let body = self.properties.unwrap_or_default();
        let login_server = body
            .login_server
            .map(|text| parse_login_server(&text).map_err(|m| ("properties.loginServer", m)))
            .transpose()?;
        let credentials = body
            .credentials
            .map(|c| {
                crate::operations::spec::validate_credentials(c)
                    .map_err(|e| ("properties.credentials", e.message))
            })
            .transpose()?;
        let properties = RegistryProperties {
            public_network_access: body
                .public_network_access
                .unwrap_or(current.public_network_access),
            network_rule_bypass_options: body
                .network_rule_bypass_options
                .unwrap_or(current.network_rule_bypass_options),
            network_rule_set: body
                .network_rule_set
                .unwrap_or_else(|| current.network_rule_set.clone()),
            policies: body.policies.unwrap_or_else(|| current.policies.clone()),
            admin_user_enabled: body
                .admin_user_enabled
                .unwrap_or(current.admin_user_enabled),
            anonymous_pull_enabled: body
                .anonymous_pull_enabled
                .unwrap_or(current.anonymous_pull_enabled),
        };
        Ok(RegistryChange {
            location: None,
            tags: self.tags,
            sku,
            login_server,
            credentials,
            properties,
        })
    }
}

/// A stored registry resource.
#[derive(Debug, Clone)]
pub struct Registry {
    pub id: uuid::Uuid,
    pub subscription_id: uuid::Uuid,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub sku: String,
    pub tags: BTreeMap<String, String>,
    pub login_server: String,
    pub properties: RegistryProperties,
    pub has_credentials: bool,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_by: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// What names one registry in ARM: subscription, resource group and name (the last
/// two matched case-insensitively).
#[derive(Debug, Clone)]
pub struct RegistryKey {
    pub subscription: uuid::Uuid,
    pub group: String,
    pub name: String,
}

/// The ARM id of a registry.
pub fn resource_id(subscription: uuid::Uuid, group: &str, name: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/{RESOURCE_TYPE}/{name}")
}

impl Registry {
    /// This registry's ARM id.
    pub fn resource_id(&self) -> String {
        resource_id(self.subscription_id, &self.resource_group, &self.name)
    }

    /// The full resource as GET/PUT/PATCH and lists return it; credentials never appear.
    pub fn to_arm(&self) -> Value {
        let mut properties = serde_json::to_value(&self.properties).unwrap_or_else(|_| json!({}));
        properties["loginServer"] = json!(self.login_server);
        properties["creationDate"] = json!(self.created_at);
        properties["provisioningState"] = json!("Succeeded");
        properties["hasCredentials"] = json!(self.has_credentials);
        json!({
            "id": self.resource_id(),
            "name": self.name,
            "type": RESOURCE_TYPE,
            "location": self.location,
            "tags": self.tags,
            "sku": { "name": self.sku, "tier": self.sku },
            "systemData": {
                "createdBy": self.created_by,
                "createdByType": "User",
                "createdAt": self.created_at,
                "lastModifiedBy": self.updated_by,
                "lastModifiedByType": "User",
                "lastModifiedAt": self.updated_at,
            },
            "properties": properties,
        })
    }

    /// The short form `GET /subscriptions/{sub}/resources` lists.
    pub fn to_generic_resource(&self) -> Value {
        json!({
            "id": self.resource_id(),
            "name": self.name,
            "type": RESOURCE_TYPE,
            "location": self.location,
            "tags": self.tags,
            "sku": { "name": self.sku, "tier": self.sku },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> RegistryBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn put_requires_location_sku_and_login_server() {
        let full = json!({"location": "westus", "sku": {"name": "premium"}, "properties": {"loginServer": "127.0.0.1:5000"}});
        let change = body(full).into_put().unwrap();
        assert_eq!(change.sku, Some(Sku::Premium));
        assert_eq!(change.login_server.as_deref(), Some("127.0.0.1:5000"));
        for (value, field) in [
            (
                json!({"sku": {"name": "Basic"}, "properties": {"loginServer": "r"}}),
                "location",
            ),
            (
                json!({"location": "w", "properties": {"loginServer": "r"}}),
                "sku.name",
            ),
            (
                json!({"location": "w", "sku": {"name": "Basic"}}),
                "properties.loginServer",
            ),
            (
                json!({"location": "w", "sku": {"name": "Free"}, "properties": {"loginServer": "r"}}),
                "sku.name",
            ),
            (
                json!({"location": "w", "sku": {"name": "Basic"}, "properties": {"loginServer": "http://r"}}),
                "properties.loginServer",
            ),
        ] {
            assert_eq!(body(value).into_put().unwrap_err().0, field);
        }
    }

    #[test]
    fn arm_shape_hides_credentials() {
        let now = chrono::Utc::now();
        let registry = Registry {
            id: uuid::Uuid::new_v4(),
            subscription_id: uuid::Uuid::nil(),
            resource_group: "RG".into(),
            name: "Reg1".into(),
            location: "westus".into(),
            sku: "Basic".into(),
            tags: BTreeMap::new(),
            login_server: "r:1".into(),
            properties: RegistryProperties::default(),
            has_credentials: true,
            created_by: "a".into(),
            created_at: now,
            updated_by: "a".into(),
            updated_at: now,
        };
        let arm = registry.to_arm();
        assert_eq!(
            arm["properties"]["policies"]["exportPolicy"]["status"],
            "enabled"
        );
        assert_eq!(arm["properties"]["publicNetworkAccess"], "Enabled");
        assert_eq!(arm["sku"]["tier"], "Basic");
        assert!(!arm.to_string().contains("password"));
    }
}
