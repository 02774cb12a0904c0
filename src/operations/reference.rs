//! Image references as the importImage body spells them (`repo[:tag]`,
//! `repo@sha256:<hex>`), parsed once at the edge into types the worker can trust.

use std::{fmt, str::FromStr, sync::LazyLock};

use regex::Regex;
use serde::{Deserialize, Serialize};

static REPOSITORY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
    )
    .expect("repository regex")
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$").expect("tag regex"));
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^sha256:[a-f0-9]{64}$").expect("digest regex"));

/// A repository name as the distribution spec allows it (lowercase path components).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository(String);

/// A tag: up to 128 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

/// A content digest; ferry accepts sha256, the algorithm every registry supports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// A source image: a repository plus a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReference {
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

/// Why a reference did not parse; the text is safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(String);

macro_rules! string_newtype {
    ($name:ident, $check:expr, $what:literal) => {
        impl FromStr for $name {
            type Err = ReferenceError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let check: fn(&str) -> bool = $check;
                if check(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(ReferenceError(format!("'{text}' is not a valid {}", $what)))
                }
            }
        }
        impl TryFrom<String> for $name {
            type Error = ReferenceError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $name {
            /// The text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    Repository,
    |t| t.len() <= 255 && REPOSITORY.is_match(t),
    "repository name"
);
string_newtype!(Tag, |t| TAG.is_match(t), "tag");
string_newtype!(Digest, |t| DIGEST.is_match(t), "sha256 digest");

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::{Digest as _, Sha256};
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The digest of a finished sha256 hasher.
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        use sha2::Digest as _;
        Self(format!("sha256:{}", hex::encode(hasher.finalize())))
    }
}

impl Repository {
    /// Docker Hub puts single-segment names under `library/`.
    pub fn for_docker_hub(self) -> Self {
        if self.0.contains('/') {
            self
        } else {
            Self(format!("library/{}", self.0))
        }
    }
}

impl ImageReference {
    /// The tag or digest to ask the registry for (digest wins when both are given).
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    /// Parses `repo`, `repo:tag`, `repo@sha256:…` or `repo:tag@sha256:…`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
            None => (text, None),
        };
        // A colon after the last slash separates the tag; one before it would be a port.
        let (repository, tag) = match name.rfind(':') {
            Some(colon) if !name[colon..].contains('/') => {
                (&name[..colon], Some(name[colon + 1..].parse::<Tag>()?))
            }
            _ => (name, None),
        };
        Ok(Self {
            repository: repository.parse()?,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_and_digests() {
        let r: ImageReference = "team/app:1.2".parse().unwrap();
        assert_eq!(r.repository.as_str(), "team/app");
        assert_eq!(r.tag.unwrap().as_str(), "1.2");
        let d = format!("app@sha256:{}", "a".repeat(64));
        let r: ImageReference = d.parse().unwrap();
        assert!(r.tag.is_none());
        assert_eq!(r.reference(), format!("sha256:{}", "a".repeat(64)));
        assert_eq!(
            "app".parse::<ImageReference>().unwrap().reference(),
            "latest"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "App",
            "app:",
            "app@sha256:xyz",
            "a//b",
            "app:-x",
            "app:t@md5:00",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn docker_hub_names_gain_library() {
        let repo: Repository = "nginx".parse().unwrap();
        assert_eq!(repo.for_docker_hub().as_str(), "library/nginx");
        let repo: Repository = "bitnami/nginx".parse().unwrap();
        assert_eq!(repo.for_docker_hub().as_str(), "bitnami/nginx");
    }
}
