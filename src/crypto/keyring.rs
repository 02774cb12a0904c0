//! The keyring: one current key that seals and any number of previous keys that
//! only open, each known by its key id (the first 4 bytes of its SHA-256, in hex).

use aes_gcm::{
    Aes256Gcm, Key, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use secrecy::SecretSlice;
use sha2::{Digest, Sha256};

use super::Sealed;

/// Why a sealed value could not be opened. Neither variant carries key material
/// or plaintext, so both are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed with a key this process was not given.
    #[error("sealed with key {0}, which is not configured")]
    UnknownKey(String),
    /// The key is known but the value does not authenticate: tampered with, or
    /// moved to another row.
    #[error("sealed value failed authentication (key {0})")]
    Rejected(String),
}

#[derive(Clone)]
struct KeyEntry {
    id: String,
    cipher: Aes256Gcm,
}

/// Seals with the current key; opens with whichever configured key a value names.
#[derive(Clone)]
pub struct Keyring {
    /// The current key first, then previous keys.
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

/// The key id of a 32-byte key: the first 4 bytes of its SHA-256, in hex.
pub fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

impl Keyring {
    /// A keyring of one key.
    pub fn single(key: &[u8; 32]) -> Self {
        Self {
            keys: vec![entry(key)],
        }
    }

    /// `current` seals; `previous` keys only open. A key listed twice counts once;
    /// two different keys with one key id are refused (their values could not be
    /// told apart).
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> anyhow::Result<Self> {
        let mut seen: Vec<([u8; 32], String)> = Vec::new();
        let mut keys = Vec::new();
        for key in std::iter::once(current).chain(previous) {
            let id = key_id(key);
            match seen.iter().find(|(_, seen_id)| *seen_id == id) {
                Some((seen_key, _)) if seen_key == key => continue,
                Some(_) => anyhow::bail!("two different secret keys share the key id {id}"),
                None => {}
            }
            seen.push((*key, id));
            keys.push(entry(key));
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every configured key id, the current one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Encrypts `plaintext` with the current key, bound to `aad` (the owning row's id).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> anyhow::Result<Sealed> {
        let current = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = current
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
            key_id: current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a value sealed for `aad` with the key its key id names.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretSlice<u8>, OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let rejected = || OpenError::Rejected(key.id.clone());
        let nonce: [u8; 12] = sealed.nonce.as_slice().try_into().map_err(|_| rejected())?;
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(SecretSlice::from)
            .map_err(|_| rejected())
    }
}

fn entry(key: &[u8; 32]) -> KeyEntry {
    let cipher_key: &Key<Aes256Gcm> = key.into();
    KeyEntry {
        id: key_id(key),
        cipher: Aes256Gcm::new(cipher_key),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_aad() {
        let keyring = Keyring::single(&[7; 32]);
        let sealed = keyring.seal(b"hunter2", b"row-1").unwrap();
        assert_eq!(
            keyring.open(&sealed, b"row-1").unwrap().expose_secret(),
            b"hunter2"
        );
        assert_eq!(
            keyring.open(&sealed, b"row-2").unwrap_err(),
            OpenError::Rejected(key_id(&[7; 32]))
        );
        assert_eq!(
            Keyring::single(&[8; 32])
                .open(&sealed, b"row-1")
                .unwrap_err(),
            OpenError::UnknownKey(key_id(&[7; 32]))
        );
    }

    #[test]
    fn the_current_key_seals_and_previous_keys_open() {
        let old = Keyring::single(&[1; 32]);
        let sealed_old = old.seal(b"old secret", b"id").unwrap();
        let rotated = Keyring::new(&[2; 32], &[[1; 32]]).unwrap();
        assert_eq!(rotated.current_key_id(), key_id(&[2; 32]));
        assert_eq!(
            rotated.open(&sealed_old, b"id").unwrap().expose_secret(),
            b"old secret"
        );
        let sealed_new = rotated.seal(b"new secret", b"id").unwrap();
        assert_eq!(sealed_new.key_id, key_id(&[2; 32]));
        assert!(matches!(
            old.open(&sealed_new, b"id"),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampered_values_and_bad_nonces_are_rejected() {
        let keyring = Keyring::single(&[3; 32]);
        let mut sealed = keyring.seal(b"x", b"id").unwrap();
        sealed.ciphertext[0] ^= 1;
        assert!(matches!(
            keyring.open(&sealed, b"id"),
            Err(OpenError::Rejected(_))
        ));
        let mut sealed = keyring.seal(b"x", b"id").unwrap();
        sealed.nonce.pop();
        assert!(matches!(
            keyring.open(&sealed, b"id"),
            Err(OpenError::Rejected(_))
        ));
    }

    #[test]
    fn repeated_keys_count_once_and_errors_name_no_key_material() {
        let keyring = Keyring::new(&[4; 32], &[[4; 32], [5; 32], [5; 32]]).unwrap();
        assert_eq!(keyring.key_ids().count(), 2);
        let debug = format!("{keyring:?}");
        assert!(debug.contains(&key_id(&[4; 32])), "{debug}");
        assert!(!debug.contains(&hex::encode([4; 32])), "{debug}");
    }
}
