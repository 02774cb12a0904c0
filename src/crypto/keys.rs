//! Where the keyring's keys come from: `FERRY_SECRET_KEY` (or its old name
//! `FERRY_ENCRYPTION_KEY`) or a key file, plus `FERRY_SECRET_KEYS_PREVIOUS`; with
//! none of them, a key generated once into the data directory. Errors say which
//! setting is wrong, never what it holds.

use std::{io::Write, path::Path};

use aes_gcm::{Aes256Gcm, KeyInit, aead::OsRng};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use super::Keyring;
use crate::config::SecretsConfig;

/// The key `serve` generates when none is configured, under the data directory.
const GENERATED_KEY_FILE: &str = "encryption.key";

/// Reads one key: 64 hex characters (32 bytes), surrounding space ignored.
pub fn parse_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    bytes.ok_or_else(|| anyhow::anyhow!("a secret key must be 64 hex characters (32 bytes)"))
}

/// Reads a key file: one key per line, blank lines and `#` comments ignored; the
/// first key is the current one.
pub fn parse_key_lines(text: &str) -> anyhow::Result<Vec<[u8; 32]>> {
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(parse_key(line).with_context(|| format!("line {}", number + 1))?);
    }
    anyhow::ensure!(!keys.is_empty(), "no key in it");
    Ok(keys)
}

impl Keyring {
    /// The configured keys; with none configured, the key generated into
    /// `data_dir` (created on first start).
    pub fn load(config: &SecretsConfig, data_dir: &Path) -> anyhow::Result<Self> {
        Self::assemble(config, data_dir, true)
    }

    /// Like [`Keyring::load`], but a missing generated key is an error: for tools
    /// (`ferry rotate-keys`) that must never invent a key.
    pub fn load_existing(config: &SecretsConfig, data_dir: &Path) -> anyhow::Result<Self> {
        Self::assemble(config, data_dir, false)
    }

    fn assemble(config: &SecretsConfig, data_dir: &Path, generate: bool) -> anyhow::Result<Self> {
        let inline = inline_key(config)?;
        let mut keys = match (inline, &config.secret_key_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set FERRY_SECRET_KEY or FERRY_SECRET_KEY_FILE, not both")
            }
            (Some((name, text)), None) => vec![parse_key(text.expose_secret()).context(name)?],
            (None, Some(path)) => read_key_file(path)
                .with_context(|| format!("FERRY_SECRET_KEY_FILE {}", path.display()))?,
            (None, None) => {
                let path = data_dir.join(GENERATED_KEY_FILE);
                let text = if generate {
                    read_or_create_key_file(&path)?
                } else {
                    std::fs::read_to_string(&path).with_context(|| {
                        format!(
                            "no key configured (FERRY_SECRET_KEY or FERRY_SECRET_KEY_FILE) and no generated key at {}",
                            path.display()
                        )
                    })?
                };
                parse_key_lines(&text).with_context(|| format!("key file {}", path.display()))?
            }
        };
        for (index, text) in config.secret_keys_previous.iter().enumerate() {
            // An empty variable (a template's unset default) is no key.
            if text.expose_secret().trim().is_empty() {
                continue;
            }
            keys.push(
                parse_key(text.expose_secret())
                    .with_context(|| format!("FERRY_SECRET_KEYS_PREVIOUS entry {}", index + 1))?,
            );
        }
        Self::new(&keys[0], &keys[1..])
    }
}

/// `FERRY_SECRET_KEY`, or its old name, with the name it was given under; both
/// set must agree.
fn inline_key(config: &SecretsConfig) -> anyhow::Result<Option<(&'static str, &SecretString)>> {
    match (&config.secret_key, &config.encryption_key) {
        (Some(new), Some(old)) if new.expose_secret().trim() != old.expose_secret().trim() => {
            anyhow::bail!(
                "FERRY_SECRET_KEY and FERRY_ENCRYPTION_KEY (its old name) are both set and differ"
            )
        }
        (Some(new), _) => Ok(Some(("FERRY_SECRET_KEY", new))),
        (None, Some(old)) => Ok(Some(("FERRY_ENCRYPTION_KEY", old))),
        (None, None) => Ok(None),
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<Vec<[u8; 32]>> {
    let text = std::fs::read_to_string(path)?;
    warn_if_shared(path);
    parse_key_lines(&text)
}

/// Logs a warning when a key file can be read by anyone but its owner.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the secret key file is readable by group or others; make it 0600"
            );
        }
    }
}

fn read_or_create_key_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        warn_if_shared(path);
        return Ok(text);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = Aes256Gcm::generate_key(&mut OsRng);
    let text = hex::encode(key);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?
    };
    file.write_all(text.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a secret key for stored credentials");
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyring::key_id;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    fn ids(keyring: &Keyring) -> Vec<String> {
        keyring.key_ids().map(str::to_owned).collect()
    }

    #[test]
    fn keys_are_64_hex_characters_and_errors_do_not_echo_them() {
        assert_eq!(parse_key(&format!(" {A}\n")).unwrap(), [0xaa; 32]);
        for bad in [&A[..62], "zz", "", &format!("{A}00")] {
            let error = format!("{:#}", parse_key(bad).unwrap_err());
            assert!(error.contains("64 hex characters"), "{error}");
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
    }

    #[test]
    fn key_files_list_the_current_key_first_and_skip_comments() {
        let text = format!("# rotated 2026-12-01\n\n{B}\n  {A}  \n");
        assert_eq!(
            parse_key_lines(&text).unwrap(),
            vec![[0xbb; 32], [0xaa; 32]]
        );
        let error = format!(
            "{:#}",
            parse_key_lines(&format!("{A}\nnot-a-key\n")).unwrap_err()
        );
        assert!(error.starts_with("line 2"), "{error}");
        assert!(!error.contains("not-a-key"), "{error}");
        assert!(parse_key_lines("# nothing\n").is_err());
    }

    #[test]
    fn the_inline_key_or_its_old_name_is_current_and_previous_keys_follow() {
        let dir = tempfile::tempdir().unwrap();
        let config = SecretsConfig {
            secret_key: Some(secret(B)),
            secret_keys_previous: vec![secret(""), secret(A)],
            ..SecretsConfig::default()
        };
        let keyring = Keyring::load(&config, dir.path()).unwrap();
        assert_eq!(ids(&keyring), [key_id(&[0xbb; 32]), key_id(&[0xaa; 32])]);
        let old_name = SecretsConfig {
            encryption_key: Some(secret(A)),
            ..SecretsConfig::default()
        };
        let keyring = Keyring::load(&old_name, dir.path()).unwrap();
        assert_eq!(ids(&keyring), [key_id(&[0xaa; 32])]);
        // Nothing was generated: a key was configured.
        assert!(!dir.path().join(GENERATED_KEY_FILE).exists());
    }

    #[test]
    fn conflicting_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let both_names = SecretsConfig {
            secret_key: Some(secret(A)),
            encryption_key: Some(secret(B)),
            ..SecretsConfig::default()
        };
        let error = format!("{:#}", Keyring::load(&both_names, dir.path()).unwrap_err());
        assert!(error.contains("differ"), "{error}");
        let key_and_file = SecretsConfig {
            secret_key: Some(secret(A)),
            secret_key_file: Some(dir.path().join("keys")),
            ..SecretsConfig::default()
        };
        assert!(Keyring::load(&key_and_file, dir.path()).is_err());
        let bad_previous = SecretsConfig {
            secret_key: Some(secret(A)),
            secret_keys_previous: vec![secret(B), secret("short")],
            ..SecretsConfig::default()
        };
        let error = format!(
            "{:#}",
            Keyring::load(&bad_previous, dir.path()).unwrap_err()
        );
        assert!(
            error.contains("FERRY_SECRET_KEYS_PREVIOUS entry 2"),
            "{error}"
        );
    }

    #[test]
    fn a_key_file_holds_current_and_previous_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("{B}\n{A}\n")).unwrap();
        let config = SecretsConfig {
            secret_key_file: Some(path),
            ..SecretsConfig::default()
        };
        let keyring = Keyring::load(&config, dir.path()).unwrap();
        assert_eq!(ids(&keyring), [key_id(&[0xbb; 32]), key_id(&[0xaa; 32])]);
        let missing = SecretsConfig {
            secret_key_file: Some(dir.path().join("absent")),
            ..SecretsConfig::default()
        };
        assert!(Keyring::load(&missing, dir.path()).is_err());
    }

    #[test]
    fn the_generated_key_is_created_once_and_never_by_load_existing() {
        let dir = tempfile::tempdir().unwrap();
        let config = SecretsConfig::default();
        assert!(Keyring::load_existing(&config, dir.path()).is_err());
        assert!(!dir.path().join(GENERATED_KEY_FILE).exists());
        let a = Keyring::load(&config, dir.path()).unwrap();
        let b = Keyring::load(&config, dir.path()).unwrap();
        let c = Keyring::load_existing(&config, dir.path()).unwrap();
        let sealed = a.seal(b"x", b"id").unwrap();
        assert!(b.open(&sealed, b"id").is_ok());
        assert!(c.open(&sealed, b"id").is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(GENERATED_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
