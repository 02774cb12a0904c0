//! Verification keys and the algorithms each one may verify. A key's own type fixes
//! its algorithm family (RSA → RS*, EC → ES* by curve, a shared secret → HS256), so a
//! token cannot pick another family for it: an HS256 token "signed" with an RSA
//! public key finds no key that accepts HS256 from that source.

use std::path::Path;

use anyhow::Context;
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;

const RSA: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// One public key (or the development secret) with the algorithms it may verify.
#[derive(Clone)]
pub(super) struct VerificationKey {
    /// The JWK `kid`; PEM keys and the secret have none and match any token `kid`.
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// The HS256 development secret.
    pub(super) fn secret(secret: &[u8]) -> Self {
        Self {
            kid: None,
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256],
        }
    }

    /// Whether this key may check a token with header `alg` and `kid`.
    pub(super) fn accepts(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.algorithms.contains(&alg)
            && match (self.kid.as_deref(), kid) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }

    /// Reads a PEM public key (`PUBLIC KEY`, `RSA PUBLIC KEY`) or certificate.
    pub(super) fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_pem(&pem)
            .with_context(|| format!("loading the public key in {}", path.display()))
    }

    fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let text = String::from_utf8_lossy(pem);
        let label = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("-----BEGIN "))
            .and_then(|rest| rest.strip_suffix("-----"))
            .context("no PEM block found")?;
        anyhow::ensure!(
            matches!(label, "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE"),
            "expected a PUBLIC KEY or CERTIFICATE block, found {label}: give ferry the public key only"
        );
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self {
                kid: None,
                key,
                algorithms: RSA.to_vec(),
            });
        }
        let key = DecodingKey::from_ec_pem(pem).context("neither an RSA nor an EC public key")?;
        // The SEC1 point's length tells the curve (uncompressed or compressed form).
        let algorithm = match key.as_bytes().len() {
            65 | 33 => Algorithm::ES256,
            97 | 49 => Algorithm::ES384,
            _ => anyhow::bail!("unsupported EC curve: use P-256 or P-384"),
        };
        Ok(Self {
            kid: None,
            key,
            algorithms: vec![algorithm],
        })
    }

    /// The usable signing keys of a JWKS document. Symmetric (`oct`), encryption-only
    /// and unknown keys are skipped, so one odd entry does not hide the others.
    pub(super) fn from_jwks(document: &[u8]) -> anyhow::Result<Vec<Self>> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(document).context("the JWKS is not a JSON key set")?;
        Ok(document
            .keys
            .into_iter()
            .filter_map(|value| {
                let jwk: Jwk = serde_json::from_value(value).ok()?;
                let key = Self::from_jwk(&jwk);
                if key.is_none() {
                    tracing::debug!(kid = ?jwk.common.key_id, "skipping a JWKS key ferry cannot use");
                }
                key
            })
            .collect())
    }

    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
            return None;
        }
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(params) => match params.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            // Never a shared secret from the network, and no EdDSA for now.
            AlgorithmParameters::OctetKey(_) | AlgorithmParameters::OctetKeyPair(_) => {
                return None;
            }
        };
        // A declared `alg` narrows the family; one outside it makes the key unusable.
        let algorithms = match jwk.common.key_algorithm {
            None => family,
            Some(declared) => {
                let declared = jwk_algorithm(declared)?;
                family.contains(&declared).then(|| vec![declared])?
            }
        };
        Some(Self {
            kid: jwk.common.key_id.clone(),
            key: DecodingKey::from_jwk(jwk).ok()?,
            algorithms,
        })
    }
}

fn jwk_algorithm(declared: KeyAlgorithm) -> Option<Algorithm> {
    Some(match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwks_keep_signing_keys_and_narrow_by_declared_alg() {
        let document = json!({ "keys": [
            { "kty": "RSA", "kid": "r1", "use": "sig", "n": "sXch", "e": "AQAB" },
            { "kty": "RSA", "kid": "r2", "alg": "RS384", "n": "sXch", "e": "AQAB" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB" },
            { "kty": "RSA", "kid": "pss", "alg": "PS256", "n": "sXch", "e": "AQAB" },
            { "kty": "RSA", "kid": "mismatch", "alg": "ES256", "n": "sXch", "e": "AQAB" },
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
            { "kty": "EC", "kid": "e1", "crv": "P-256", "x": "AA", "y": "AA" },
            { "kty": "weird", "kid": "w" },
        ]});
        let keys = VerificationKey::from_jwks(document.to_string().as_bytes()).unwrap();
        let summary: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.as_deref().unwrap(), k.algorithms.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("r1", RSA.to_vec()),
                ("r2", vec![Algorithm::RS384]),
                ("e1", vec![Algorithm::ES256]),
            ]
        );
        assert!(VerificationKey::from_jwks(b"[]").is_err());
    }

    #[test]
    fn key_matching_needs_the_algorithm_and_an_equal_kid() {
        let key = VerificationKey {
            kid: Some("a".into()),
            ..VerificationKey::secret(b"x")
        };
        assert!(key.accepts(Algorithm::HS256, Some("a")));
        assert!(key.accepts(Algorithm::HS256, None));
        assert!(!key.accepts(Algorithm::HS256, Some("b")));
        assert!(!key.accepts(Algorithm::RS256, Some("a")));
    }

    #[test]
    fn private_keys_and_garbage_are_refused_as_pem() {
        let private = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let error = VerificationKey::from_pem(private).unwrap_err().to_string();
        assert!(error.contains("public key only"), "{error}");
        assert!(VerificationKey::from_pem(b"hello").is_err());
        let bad = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(VerificationKey::from_pem(bad).is_err());
    }
}
