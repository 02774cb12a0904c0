//! Manifests as raw bytes with their media type (so digests never change), the
//! parsing needed to walk them (an index's children with their platforms, an image's
//! blobs, a referrer's subject), and the manifest endpoints.

use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};
use reqwest::{StatusCode, header};

use super::{Registry, RegistryError, Scope, exists, expect, read_limited};
use crate::operations::{platform::Platform, reference::Digest, reference::Repository};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types ferry asks for and copies.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// Error codes a manifest PUT may get while a referenced blob is still being
/// committed by a concurrent upload.
const BLOB_RACE_CODES: [&str; 3] = ["DIGEST_INVALID", "BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"];

/// Manifests larger than this are refused (the distribution spec's suggested limit).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A manifest exactly as the registry served it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// A blob an image needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// A child of an index.
#[derive(Debug, Clone)]
pub struct ChildRef {
    pub digest: Digest,
    /// `os`, `architecture`, `variant` when the index states a platform.
    pub platform: Option<(String, String, Option<String>)>,
    /// For BuildKit attestation manifests: the child they describe.
    pub describes: Option<String>,
}

/// What a manifest refers to.
#[derive(Debug)]
pub enum Contents {
    /// An index: child manifests.
    Index(Vec<ChildRef>),
    /// An image (or artifact): its config and distributable layers.
    Image(Vec<BlobRef>),
}

fn digest_of(text: &str) -> Result<Digest, RegistryError> {
    text.parse()
        .map_err(|_| RegistryError::UnsupportedMediaType(format!("descriptor digest {text}")))
}

/// Layers that live outside the registry (Windows base layers) are never copied.
fn distributable(media_type: &str) -> bool {
    !media_type.contains("foreign") && !media_type.contains("nondistributable")
}

impl Manifest {
    /// Wraps fetched bytes, settling the media type from the header or the body.
    pub fn new(bytes: Bytes, header_type: Option<&str>) -> Result<Self, RegistryError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::TooLarge(format!(
                "manifest of {} bytes exceeds 4 MiB",
                bytes.len()
            )));
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Protocol(format!("manifest is not JSON: {e}")))?;
        let header_type =
            header_type.map(|t| t.split(';').next().unwrap_or_default().trim().to_owned());
        let media_type = match header_type {
            Some(t) if ACCEPTED.contains(&t.as_str()) => t,
            other => match json["mediaType"].as_str() {
                Some(t) => t.to_owned(),
                None if json["schemaVersion"] == 2 && json.get("manifests").is_some() => {
                    OCI_INDEX.to_owned()
                }
                None if json["schemaVersion"] == 2 && json.get("layers").is_some() => {
                    OCI_MANIFEST.to_owned()
                }
                None => other.unwrap_or_else(|| "unknown".to_owned()),
            },
        };
        if !ACCEPTED.contains(&media_type.as_str()) {
            return Err(RegistryError::UnsupportedMediaType(media_type));
        }
        Ok(Self {
            digest: Digest::of(&bytes),
            bytes,
            media_type,
        })
    }

    /// Whether this manifest is an index / manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    fn invalid(&self) -> impl Fn(serde_json::Error) -> RegistryError + '_ {
        move |e| RegistryError::Protocol(format!("manifest {}: {e}", self.digest))
    }

    /// The children or blobs this manifest refers to.
    pub fn contents(&self) -> Result<Contents, RegistryError> {
        if self.is_index() {
            let index: ImageIndex = serde_json::from_slice(&self.bytes).map_err(self.invalid())?;
            let children = index
                .manifests()
                .iter()
                .map(|d| {
                    Ok::<_, RegistryError>(ChildRef {
                        digest: digest_of(d.digest().as_ref())?,
                        platform: d.platform().as_ref().map(|p| {
                            (
                                p.os().to_string(),
                                p.architecture().to_string(),
                                p.variant().clone(),
                            )
                        }),
                        describes: d
                            .annotations()
                            .as_ref()
                            .and_then(|a| a.get("vnd.docker.reference.digest").cloned()),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Contents::Index(children))
        } else {
            let image: ImageManifest =
                serde_json::from_slice(&self.bytes).map_err(self.invalid())?;
            std::iter::once(image.config())
                .chain(image.layers())
                .filter(|d| distributable(d.media_type().as_ref()))
                .map(|d| {
                    Ok(BlobRef {
                        digest: digest_of(d.digest().as_ref())?,
                        size: d.size(),
                    })
                })
                .collect::<Result<_, _>>()
                .map(Contents::Image)
        }
    }

    /// The manifest this one refers to as its `subject`, if any.
    pub fn subject(&self) -> Option<Digest> {
        let json: serde_json::Value = serde_json::from_slice(&self.bytes).ok()?;
        json["subject"]["digest"].as_str()?.parse().ok()
    }

    /// This index with only the children for `platforms` (and the attestations that
    /// describe them); `None` when no child matches. The result has a new digest.
    pub fn filter_platforms(&self, platforms: &[Platform]) -> Result<Option<Self>, RegistryError> {
        let Contents::Index(children) = self.contents()? else {
            return Ok(Some(self.clone()));
        };
        let kept: Vec<String> = children
            .iter()
            .filter(|c| {
                c.platform.as_ref().is_some_and(|(os, arch, variant)| {
                    platforms
                        .iter()
                        .any(|p| p.matches(os, arch, variant.as_deref()))
                })
            })
            .map(|c| c.digest.to_string())
            .collect();
        if kept.is_empty() {
            return Ok(None);
        }
        let keep = |entry: &serde_json::Value| {
            let digest = entry["digest"].as_str().unwrap_or_default();
            let describes = entry["annotations"]["vnd.docker.reference.digest"].as_str();
            kept.iter()
                .any(|k| k == digest || Some(k.as_str()) == describes)
        };
        let mut json: serde_json::Value =
            serde_json::from_slice(&self.bytes).map_err(self.invalid())?;
        let entries = json["manifests"]
            .as_array_mut()
            .expect("an index lists manifests");
        entries.retain(keep);
        let bytes = serde_json::to_vec(&json).map_err(self.invalid())?;
        Self::new(Bytes::from(bytes), Some(&self.media_type)).map(Some)
    }
}

impl Registry {
    /// Fetches a manifest by tag or digest; a digest reference is verified.
    pub async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        if let Some(pause) = self.limits.pause() {
            tracing::warn!(?pause, "pull rate limit nearly spent; pausing");
            tokio::time::sleep(pause).await;
        }
        let url = self.url(repository, &format!("manifests/{reference}"));
        let accept = ACCEPTED.join(", ");
        let response = self
            .send(&Scope::pull(repository), || {
                self.http.get(&url).header(header::ACCEPT, &accept)
            })
            .await?;
        let response = expect(response, &[StatusCode::OK], || {
            format!("manifest {repository}:{reference}")
        })
        .await?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
        {
            return Err(RegistryError::TooLarge("manifest exceeds 4 MiB".to_owned()));
        }
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response, MAX_MANIFEST_BYTES).await?;
        let manifest = Manifest::new(bytes, media_type.as_deref())?;
        if reference.starts_with("sha256:") && manifest.digest.as_str() != reference {
            return Err(RegistryError::DigestMismatch {
                expected: reference.to_owned(),
            });
        }
        Ok(manifest)
    }

    /// HEAD on a manifest by tag or digest.
    async fn head_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let accept = ACCEPTED.join(", ");
        self.send(&Scope::pull(repository), || {
            self.http.head(&url).header(header::ACCEPT, &accept)
        })
        .await
    }

    /// Whether a manifest exists under a tag or digest.
    pub async fn manifest_exists(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<bool, RegistryError> {
        let response = self.head_manifest(repository, reference).await?;
        exists(response, || format!("manifest {repository}:{reference}")).await
    }

    /// The digest a tag (or digest) resolves to, `None` when absent.
    pub async fn manifest_digest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let response = self.head_manifest(repository, reference).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect(response, &[StatusCode::OK], || {
            format!("manifest {repository}:{reference}")
        })
        .await?;
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match header_digest {
            Some(digest) => Ok(Some(digest)),
            // Registries that omit the header: the manifest itself says.
            None => self
                .get_manifest(repository, reference)
                .await
                .map(|m| Some(m.digest)),
        }
    }

    /// Stores a manifest under a tag or its digest.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self
                .send(&Scope::push(repository), || {
                    self.http
                        .put(&url)
                        .header(header::CONTENT_TYPE, &manifest.media_type)
                        .body(manifest.bytes.clone())
                })
                .await?;
            let result = expect(
                response,
                &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
                || format!("manifest {repository}:{reference}"),
            )
            .await;
            // While another import is still committing the same blob, distribution
            // can briefly judge it invalid or unknown: that passes.
            let racing = matches!(&result, Err(RegistryError::Status { status: 400, code })
                if BLOB_RACE_CODES.iter().any(|c| code.contains(c)));
            match self.settings.retry.delay(attempt, None) {
                Some(delay) if racing => tokio::time::sleep(delay).await,
                _ => return result.map(drop),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn media_type_falls_back_to_body_and_shape() {
        let body = Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#);
        assert!(
            Manifest::new(body, Some("application/json"))
                .unwrap()
                .is_index()
        );
        let schema1 = Bytes::from_static(br#"{"schemaVersion":1,"fsLayers":[]}"#);
        assert!(matches!(
            Manifest::new(
                schema1,
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Err(RegistryError::UnsupportedMediaType(_))
        ));
    }

    fn descriptor(n: u8, platform: serde_json::Value) -> serde_json::Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", hex::encode([n; 32])),
            "size": 10,
            "platform": platform,
        })
    }

    #[test]
    fn platform_filter_keeps_matches_and_their_attestations() {
        let mut attestation = descriptor(9, json!({"os": "unknown", "architecture": "unknown"}));
        attestation["annotations"] = json!({
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": format!("sha256:{}", hex::encode([2u8; 32])),
        });
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                descriptor(1, json!({"os": "linux", "architecture": "amd64"})),
                descriptor(2, json!({"os": "linux", "architecture": "arm64"})),
                descriptor(3, json!({"os": "linux", "architecture": "arm", "variant": "v7"})),
                attestation,
            ],
        });
        let index = Manifest::new(Bytes::from(serde_json::to_vec(&index).unwrap()), None).unwrap();
        let platforms = [
            "linux/arm64".parse().unwrap(),
            "linux/arm/v7".parse().unwrap(),
        ];
        let filtered = index.filter_platforms(&platforms).unwrap().unwrap();
        assert_ne!(filtered.digest, index.digest);
        let Contents::Index(children) = filtered.contents().unwrap() else {
            panic!("an index");
        };
        let kept: Vec<u8> = children
            .iter()
            .map(|c| hex::decode(&c.digest.as_str()[7..]).unwrap()[0])
            .collect();
        assert_eq!(kept, [2, 3, 9]);
        assert!(
            index
                .filter_platforms(&["windows/amd64".parse().unwrap()])
                .unwrap()
                .is_none()
        );
    }
}
