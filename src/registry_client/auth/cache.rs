//! Authenticators shared by the imports that reach one registry host with the same
//! credentials, so tokens and learnt challenges outlive a single import; idle ones
//! are dropped after a while.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;
use sha2::{Digest as _, Sha256};

use super::Authenticator;
use crate::operations::spec::Credentials;

/// How long an unused authenticator stays in the cache.
const IDLE_EVICTION: Duration = Duration::from_secs(600);

/// Authenticators by host and credentials. The key holds a hash of the
/// credentials, so imports with other credentials never share tokens.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    entries: HashMap<(String, [u8; 32]), (Arc<Authenticator>, Instant)>,
}

impl AuthCache {
    /// The shared authenticator for `host` and `credentials`, made on first use.
    pub(crate) fn get_or_insert(
        &mut self,
        host: &str,
        credentials: Option<Credentials>,
        make: impl FnOnce(Option<Credentials>) -> Authenticator,
    ) -> Arc<Authenticator> {
        let now = Instant::now();
        self.entries
            .retain(|_, (auth, used)| Arc::strong_count(auth) > 1 || now - *used < IDLE_EVICTION);
        let mut hasher = Sha256::new();
        if let Some(credentials) = &credentials {
            hasher.update(credentials.username.as_deref().unwrap_or("").as_bytes());
            hasher.update([0]);
            hasher.update(credentials.password.expose_secret().as_bytes());
        }
        let key = (host.to_owned(), hasher.finalize().into());
        let (auth, used) = self
            .entries
            .entry(key)
            .or_insert_with(|| (Arc::new(make(credentials)), now));
        *used = now;
        auth.clone()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::registry_client::retry::RetryPolicy;

    #[test]
    fn cached_authenticators_are_shared_only_by_equal_credentials() {
        let mut cache = AuthCache::default();
        let login = |password: &str| {
            Some(Credentials {
                username: Some("alice".into()),
                password: SecretString::from(password.to_owned()),
            })
        };
        let make = |credentials| {
            Authenticator::new(
                reqwest::Client::new(),
                credentials,
                RetryPolicy::default(),
                super::super::Origin {
                    base: "https://r.example".into(),
                    egress: Arc::default(),
                },
            )
        };
        let a = cache.get_or_insert("r.example", login("one"), make);
        let again = cache.get_or_insert("r.example", login("one"), make);
        assert!(Arc::ptr_eq(&a, &again));
        for other in [
            cache.get_or_insert("r.example", login("two"), make),
            cache.get_or_insert("r.example", None, make),
            cache.get_or_insert("s.example", login("one"), make),
        ] {
            assert!(!Arc::ptr_eq(&a, &other));
        }
    }
}
