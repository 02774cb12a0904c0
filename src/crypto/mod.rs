//! Stored credentials at rest: AES-256-GCM with a random nonce per value, the id of
//! the key that sealed it, and the owning row's id as associated data (a ciphertext
//! moved to another row fails to open). A [`Keyring`] seals with its current key
//! and opens with any configured key, so keys can rotate; `ferry rotate-keys`
//! ([`rotate`]) re-seals old rows with the current key.

mod keyring;
mod keys;
pub mod rotate;
pub mod store;

pub use keyring::{Keyring, OpenError, key_id};
pub use keys::{parse_key, parse_key_lines};

/// A sealed value as stored in Postgres.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}
