//! Sealing of stored credentials with AES-256-GCM: a random nonce per value, a key
//! id so keys can rotate, and associated data binding each ciphertext to its row.

use std::{io::Write, path::Path};

use aes_gcm::{
    Aes256Gcm, Key, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A sealed value as stored in Postgres.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Seals and opens credentials with the service's key.
#[derive(Clone)]
pub struct Sealer {
    key_id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer {{ key_id: {} }}", self.key_id)
    }
}

impl Sealer {
    /// A sealer for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        let key_id = hex::encode(&Sha256::digest(key)[..4]);
        let key: &Key<Aes256Gcm> = key.into();
        Self {
            key_id,
            cipher: Aes256Gcm::new(key),
        }
    }

    /// The key from configuration (64 hex characters), else the one generated into
    /// `data_dir/encryption.key` on first start.
    pub fn load(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<Self> {
        let text = match configured {
            Some(secret) => secret.expose_secret().to_owned(),
            None => read_or_create_key_file(&data_dir.join("encryption.key"))?,
        };
        let bytes =
            hex::decode(text.trim()).context("the encryption key must be 64 hex characters")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the encryption key must be 64 hex characters"))?;
        Ok(Self::new(&key))
    }

    /// Encrypts `plaintext`, bound to `aad` (the owning row's id).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> anyhow::Result<Sealed> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        Ok(Sealed {
            key_id: self.key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a value sealed for `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(
            sealed.key_id == self.key_id,
            "sealed with unknown key {}",
            sealed.key_id
        );
        let nonce: [u8; 12] = sealed
            .nonce
            .as_slice()
            .try_into()
            .context("bad nonce length")?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealed value failed authentication"))
    }
}

fn read_or_create_key_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(text);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = Aes256Gcm::generate_key(&mut OsRng);
    let text = hex::encode(key);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(text)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_aad() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"hunter2", b"row-1").unwrap();
        assert_eq!(sealer.open(&sealed, b"row-1").unwrap(), b"hunter2");
        assert!(sealer.open(&sealed, b"row-2").is_err());
        assert!(Sealer::new(&[8; 32]).open(&sealed, b"row-1").is_err());
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sealer::load(None, dir.path()).unwrap();
        let b = Sealer::load(None, dir.path()).unwrap();
        let sealed = a.seal(b"x", b"id").unwrap();
        assert_eq!(b.open(&sealed, b"id").unwrap(), b"x");
    }
}
