//! Secrets at rest and tokens in flight: AES-256-GCM sealing of source credentials, SHA-256
//! fingerprints and hashes, random tokens.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("must be 32 bytes as base64 or 64 hex digits")]
    BadKey,
    #[error("sealed value is malformed or was sealed under another key")]
    Unseal,
}

/// The key that seals source credentials. Cloning copies 32 bytes.
#[derive(Clone)]
pub struct SecretKey(Aes256Gcm);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Version tag of the sealed format, so a later scheme can coexist with this one.
const SEALED_PREFIX: &str = "v1:";

impl SecretKey {
    /// Parses 32 bytes given as base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse(s: &str) -> Result<SecretKey, CryptoError> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| CryptoError::BadKey)?
        } else {
            STANDARD
                .decode(s)
                .or_else(|_| URL_SAFE_NO_PAD.decode(s))
                .map_err(|_| CryptoError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        Aes256Gcm::new_from_slice(&bytes)
            .map(SecretKey)
            .map_err(|_| CryptoError::BadKey)
    }

    /// A fresh random key in base64, for the demo.
    pub fn generate() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// Encrypts `plaintext` under a fresh random nonce: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        // Encryption with a valid key and in-memory buffer cannot fail.
        let ct = self
            .0
            .encrypt(nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, CryptoError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Unseal)?;
        let raw = STANDARD.decode(body).map_err(|_| CryptoError::Unseal)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Unseal);
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .0
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Unseal)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Unseal)
    }
}

/// Hex SHA-256: how bot and refresh tokens are stored.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Twelve hex digits of the SHA-256 of a credential: enough to tell two apart, useless to an
/// attacker.
pub fn fingerprint(secret: &str) -> String {
    sha256_hex(secret)[..12].to_owned()
}

/// A random URL-safe token with a readable prefix (`chex_bot_…`, `chex_rt_…`).
pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::parse(&SecretKey::generate()).expect("generated key parses")
    }

    #[test]
    fn sealed_values_open_to_the_original() {
        let k = key();
        let sealed = k.seal("xoxb-123");
        assert!(!sealed.contains("xoxb"));
        assert_eq!(k.open(&sealed).expect("opens"), "xoxb-123");
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let k = key();
        assert_ne!(k.seal("same"), k.seal("same"));
    }

    #[test]
    fn another_key_or_a_tampered_value_does_not_open() {
        let sealed = key().seal("xoxb-123");
        assert!(key().open(&sealed).is_err());
        let k = key();
        let mut s = k.seal("xoxb-123");
        // Another last character: one in 64 seals already ended in the one this used to put.
        let last = s.pop().expect("a sealed value is not empty");
        s.push(if last == 'A' { 'B' } else { 'A' });
        assert!(k.open(&s).is_err());
        assert!(k.open("garbage").is_err());
    }

    #[test]
    fn keys_parse_from_hex_and_base64_only_at_32_bytes() {
        assert!(SecretKey::parse(&"ab".repeat(32)).is_ok());
        assert!(SecretKey::parse(&"ab".repeat(16)).is_err());
        assert!(SecretKey::parse("").is_err());
    }
}
