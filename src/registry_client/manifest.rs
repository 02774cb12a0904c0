//! Manifests as raw bytes with their media type (so digests never change), and the
//! parsing needed to walk them: which children an index has, which blobs an image uses.

use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};

use super::RegistryError;
use crate::operations::reference::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types ferry asks for and copies.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

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

/// What a manifest refers to.
#[derive(Debug)]
pub enum Contents {
    /// An index: child manifests by digest.
    Index(Vec<Digest>),
    /// An image (or artifact): its config and layers.
    Image(Vec<BlobRef>),
}

fn digest_of(text: &str) -> Result<Digest, RegistryError> {
    text.parse()
        .map_err(|_| RegistryError::UnsupportedMediaType(format!("descriptor digest {text}")))
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

    /// The children or blobs this manifest refers to.
    pub fn contents(&self) -> Result<Contents, RegistryError> {
        let invalid = |e: serde_json::Error| {
            RegistryError::Protocol(format!("manifest {}: {e}", self.digest))
        };
        if self.is_index() {
            let index: ImageIndex = serde_json::from_slice(&self.bytes).map_err(invalid)?;
            let children = index
                .manifests()
                .iter()
                .map(|d| digest_of(d.digest().as_ref()))
                .collect::<Result<_, _>>()?;
            Ok(Contents::Index(children))
        } else {
            let image: ImageManifest = serde_json::from_slice(&self.bytes).map_err(invalid)?;
            std::iter::once(image.config())
                .chain(image.layers())
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
