//! The importImage request: the body as clients send it, and the validated
//! [`ImportSpec`] that is stored with the operation and read by the worker.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    platform::{MAX_PLATFORMS, Platform},
    reference::{ImageReference, Repository, Tag},
};

/// The most target tags or untagged repositories one import may name.
pub const MAX_TARGETS: usize = 50;

/// The importImage body as it arrives; every field optional so that validation,
/// not serde, names what is missing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportImageBody {
    pub source: Option<SourceBody>,
    pub target_tags: Option<Vec<String>>,
    pub untagged_target_repositories: Option<Vec<String>>,
    pub mode: Option<String>,
    /// ferry extension: also copy referrers (signatures, SBOMs); default true.
    pub copy_referrers: Option<bool>,
    /// ferry extension: copy only these platforms of a multi-platform index.
    pub platforms: Option<Vec<String>>,
}

/// `source` of the importImage body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceBody {
    pub source_image: Option<String>,
    pub registry_uri: Option<String>,
    pub resource_id: Option<String>,
    pub credentials: Option<CredentialsBody>,
}

/// `source.credentials`: a username and password, or a password alone (a token).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

/// Credentials for a registry, kept apart from the spec and stored sealed.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: SecretString,
}

impl Credentials {
    /// The JSON text that gets sealed.
    pub fn to_plaintext(&self) -> Vec<u8> {
        serde_json::json!({ "username": self.username, "password": self.password.expose_secret() })
            .to_string()
            .into_bytes()
    }
}

/// Whether existing target tags may be overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportMode {
    NoForce,
    Force,
}

/// Where the source image lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceRegistry {
    /// A registry named by `host[:port]`.
    Uri { host: String },
    /// A ferry registry resource (resolved from `resourceId` at submission).
    Resource {
        registry_id: uuid::Uuid,
        login_server: String,
    },
}

/// A tag to create in the target registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetTag {
    pub repository: Repository,
    pub tag: Tag,
}

/// A validated import, stored as the operation's spec (credentials excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    pub source_registry: SourceRegistry,
    pub source_image: ImageReference,
    pub target_tags: Vec<TargetTag>,
    pub untagged_repositories: Vec<Repository>,
    pub mode: ImportMode,
    /// Copy the referrers of every copied manifest.
    #[serde(default = "yes")]
    pub copy_referrers: bool,
    /// When not empty, copy only these platforms of an index (pushing a rewritten index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
}

fn yes() -> bool {
    true
}

/// A field that failed validation; `target` is its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub target: String,
    pub message: String,
}

fn invalid(target: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        target: target.to_owned(),
        message: message.into(),
    }
}

/// Where the body says the source is, before a `resourceId` is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocator {
    Uri(String),
    ResourceId(String),
}

/// The body after validation; the handler resolves `locator` into a [`SourceRegistry`].
#[derive(Debug)]
pub struct ValidatedImport {
    pub locator: SourceLocator,
    pub source_image: ImageReference,
    pub credentials: Option<Credentials>,
    pub target_tags: Vec<TargetTag>,
    pub untagged_repositories: Vec<Repository>,
    pub mode: ImportMode,
    pub copy_referrers: bool,
    pub platforms: Vec<Platform>,
}

impl ValidatedImport {
    /// The spec to store once the source registry is known.
    pub fn into_spec(self, source_registry: SourceRegistry) -> (ImportSpec, Option<Credentials>) {
        let spec = ImportSpec {
            source_registry,
            source_image: self.source_image,
            target_tags: self.target_tags,
            untagged_repositories: self.untagged_repositories,
            mode: self.mode,
            copy_referrers: self.copy_referrers,
            platforms: self.platforms,
        };
        (spec, self.credentials)
    }
}

impl ImportImageBody {
    /// Checks every field and applies the CLI's defaults for targets.
    pub fn validate(self) -> Result<ValidatedImport, SpecError> {
        let source = self
            .source
            .ok_or_else(|| invalid("source", "The source is required."))?;
        let image_text = source
            .source_image
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| invalid("source.sourceImage", "The source image is required."))?;
        let source_image: ImageReference = image_text.parse().map_err(|e| {
            invalid(
                "source.sourceImage",
                format!("The source image is invalid: {e}."),
            )
        })?;
        let locator = match (source.registry_uri, source.resource_id) {
            (Some(uri), None) => SourceLocator::Uri(
                parse_login_server(&uri).map_err(|m| invalid("source.registryUri", m))?,
            ),
            (None, Some(id)) => SourceLocator::ResourceId(id),
            _ => {
                return Err(invalid(
                    "source",
                    "Exactly one of source.registryUri and source.resourceId is required.",
                ));
            }
        };
        let credentials = source.credentials.map(validate_credentials).transpose()?;
        let mode = match self.mode.as_deref() {
            None => ImportMode::NoForce,
            Some(m) if m.eq_ignore_ascii_case("NoForce") => ImportMode::NoForce,
            Some(m) if m.eq_ignore_ascii_case("Force") => ImportMode::Force,
            Some(m) => {
                return Err(invalid(
                    "mode",
                    format!("The mode '{m}' is invalid: use NoForce or Force."),
                ));
            }
        };
        let default_tag = source_image
            .tag
            .clone()
            .unwrap_or_else(|| "latest".parse().expect("latest is a tag"));
        let mut target_tags = Vec::new();
        for text in self.target_tags.unwrap_or_default() {
            let tag = parse_target_tag(&text, &default_tag).map_err(|m| {
                invalid(
                    "targetTags",
                    format!("The target tag '{text}' is invalid: {m}."),
                )
            })?;
            if !target_tags.contains(&tag) {
                target_tags.push(tag);
            }
        }
        let mut untagged_repositories = Vec::new();
        for text in self.untagged_target_repositories.unwrap_or_default() {
            let repo: Repository = text.parse().map_err(|e| {
                invalid(
                    "untaggedTargetRepositories",
                    format!("The repository '{text}' is invalid: {e}."),
                )
            })?;
            if !untagged_repositories.contains(&repo) {
                untagged_repositories.push(repo);
            }
        }
        if target_tags.len() > MAX_TARGETS || untagged_repositories.len() > MAX_TARGETS {
            return Err(invalid(
                "targetTags",
                format!(
                    "At most {MAX_TARGETS} target tags and {MAX_TARGETS} untagged repositories are allowed."
                ),
            ));
        }
        if target_tags.is_empty() && untagged_repositories.is_empty() {
            target_tags.push(TargetTag {
                repository: source_image.repository.clone(),
                tag: default_tag,
            });
        }
        let platforms = parse_platforms(self.platforms.unwrap_or_default())?;
        Ok(ValidatedImport {
            locator,
            source_image,
            credentials,
            target_tags,
            untagged_repositories,
            mode,
            copy_referrers: self.copy_referrers.unwrap_or(true),
            platforms,
        })
    }
}

pub fn validate_credentials(body: CredentialsBody) -> Result<Credentials, SpecError> {
    let password = body
        .password
        .filter(|p| !p.expose_secret().is_empty())
        .ok_or_else(|| {
            invalid(
                "source.credentials.password",
                "The password is required when credentials are given.",
            )
        })?;
    if password.expose_secret().len() > 16 * 1024 {
        return Err(invalid(
            "source.credentials.password",
            "The password is longer than 16 KiB.",
        ));
    }
    let username = body.username.filter(|u| !u.is_empty());
    if username
        .as_ref()
        .is_some_and(|u| u.len() > 1024 || u.contains(':'))
    {
        return Err(invalid(
            "source.credentials.username",
            "The username is invalid.",
        ));
    }
    Ok(Credentials { username, password })
}

fn parse_platforms(texts: Vec<String>) -> Result<Vec<Platform>, SpecError> {
    if texts.len() > MAX_PLATFORMS {
        return Err(invalid(
            "platforms",
            format!("At most {MAX_PLATFORMS} platforms are allowed."),
        ));
    }
    let mut platforms = Vec::new();
    for text in texts {
        let platform: Platform = text
            .parse()
            .map_err(|m| invalid("platforms", format!("The platform {m}.")))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}

fn parse_target_tag(text: &str, default_tag: &Tag) -> Result<TargetTag, String> {
    let reference: ImageReference = text.parse().map_err(|e| format!("{e}"))?;
    if reference.digest.is_some() {
        return Err("a target tag cannot contain a digest".to_owned());
    }
    Ok(TargetTag {
        repository: reference.repository,
        tag: reference.tag.unwrap_or_else(|| default_tag.clone()),
    })
}

/// Checks a registry address (`host[:port]`, no scheme or path) and returns it lowercased.
pub fn parse_login_server(text: &str) -> Result<String, String> {
    let lowered = text.trim().to_ascii_lowercase();
    let message = || format!("'{text}' is not a registry address of the form host[:port].");
    if lowered.is_empty() || lowered.len() > 255 || lowered.contains(['/', '@', '?', '#', ' ']) {
        return Err(message());
    }
    let url = url::Url::parse(&format!("https://{lowered}/")).map_err(|_| message())?;
    let host = url.host_str().ok_or_else(message)?;
    let rebuilt = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    // The URL parser normalises odd forms (`127.1`, `0x7f.0.0.1`); insist on the plain one.
    if rebuilt != lowered
        && !(lowered.ends_with(":443") && rebuilt == lowered.trim_end_matches(":443"))
    {
        return Err(message());
    }
    Ok(lowered)
}

/// Docker Hub's API host, and whether `host` is one of its public names.
pub fn docker_hub_api_host(host: &str) -> Option<&'static str> {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry.hub.docker.com" | "registry-1.docker.io"
    )
    .then_some("registry-1.docker.io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: serde_json::Value) -> ImportImageBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_target_to_source_repo_and_tag() {
        let v =
            body(json!({"source": {"sourceImage": "team/app:1", "registryUri": "r.example:5000"}}))
                .validate()
                .unwrap();
        assert_eq!(v.target_tags.len(), 1);
        assert_eq!(v.target_tags[0].repository.as_str(), "team/app");
        assert_eq!(v.target_tags[0].tag.as_str(), "1");
        assert_eq!(v.mode, ImportMode::NoForce);
        assert_eq!(v.locator, SourceLocator::Uri("r.example:5000".into()));
    }

    #[test]
    fn target_without_tag_takes_source_tag() {
        let v = body(json!({"source": {"sourceImage": "app:7", "registryUri": "r.example"}, "targetTags": ["copy"]}))
            .validate()
            .unwrap();
        assert_eq!(v.target_tags[0].tag.as_str(), "7");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({}), "source"),
            (
                json!({"source": {"registryUri": "r"}}),
                "source.sourceImage",
            ),
            (
                json!({"source": {"sourceImage": "A:b", "registryUri": "r"}}),
                "source.sourceImage",
            ),
            (json!({"source": {"sourceImage": "a"}}), "source"),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "r", "resourceId": "x"}}),
                "source",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "http://r/x"}}),
                "source.registryUri",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "r", "credentials": {"username": "u"}}}),
                "source.credentials.password",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "r"}, "mode": "Sometimes"}),
                "mode",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "r"}, "targetTags": ["b@sha256:00"]}),
                "targetTags",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "r"}, "untaggedTargetRepositories": ["B"]}),
                "untaggedTargetRepositories",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "r"}, "platforms": ["amd64"]}),
                "platforms",
            ),
        ];
        for (value, target) in cases {
            let err = body(value.clone()).validate().unwrap_err();
            assert_eq!(err.target, target, "{value}");
        }
    }

    #[test]
    fn login_servers_are_plain_host_port() {
        assert_eq!(
            parse_login_server("Reg.Example:5000").unwrap(),
            "reg.example:5000"
        );
        assert_eq!(
            parse_login_server("127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000"
        );
        for bad in ["", "https://r", "r/x", "u@r", "127.1", "r:99999", "r:"] {
            assert!(parse_login_server(bad).is_err(), "{bad}");
        }
    }
}
