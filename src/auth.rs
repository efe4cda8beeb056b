//! Who is calling: password hashing, access-token (JWT) minting and validation, bot tokens.
//!
//! Algorithms are pinned per key: Chex's own tokens are HS256 under `CHEX_JWT_SECRET`; tokens from
//! the operator's backend are RS256 or ES256 under `CHEX_JWT_PUBLIC_KEY`. A token's header picks
//! which key checks it, and each key accepts only its own algorithm, so `none` and HS/RS confusion
//! (an HS256 token "signed" with the public key) are refused.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Seconds of clock skew tolerated on `exp`/`nbf`.
const LEEWAY_SECS: u64 = 5;

/// The claims of a Chex access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id, or `bot:{id}` for a bot token exchanged for a JWT.
    pub sub: String,
    /// Organization id.
    pub org: i64,
    /// `admin` or `member`.
    pub role: String,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
    /// When present, the only topics the bearer may subscribe to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_default()
    }

    /// Whether the `topics` claim allows `topic`.
    pub fn allows_topic(&self, topic: &str) -> bool {
        self.topics
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == topic))
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token is invalid")]
    Invalid,
    #[error("token was revoked")]
    Revoked,
}

/// An operator's public key for externally minted tokens.
#[derive(Clone)]
pub struct PublicKey {
    alg: Algorithm,
    key: DecodingKey,
}

impl PublicKey {
    /// Reads a PEM (or a path to one): RSA keys verify RS256, EC keys ES256.
    pub fn load(pem_or_path: &str) -> Result<PublicKey, String> {
        let pem = if pem_or_path.contains("-----BEGIN") {
            pem_or_path.to_owned()
        } else {
            std::fs::read_to_string(pem_or_path)
                .map_err(|e| format!("cannot read {pem_or_path}: {e}"))?
        };
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            return Ok(PublicKey {
                alg: Algorithm::RS256,
                key,
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            return Ok(PublicKey {
                alg: Algorithm::ES256,
                key,
            });
        }
        Err("not an RSA or EC public key in PEM".into())
    }
}

/// Signing and verification keys plus the revocation list. Clone it freely.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    hs: DecodingKey,
    public: Option<PublicKey>,
    issuer: String,
    audience: String,
    ttl: i64,
    /// Revoked `jti`s; checked on every validation, loaded from the store at start.
    revoked: Arc<RwLock<HashSet<String>>>,
}

impl Keys {
    pub fn from_config(c: &Config) -> Result<Keys, String> {
        let public = c
            .jwt_public_key
            .as_deref()
            .map(PublicKey::load)
            .transpose()?;
        Ok(Keys {
            encoding: EncodingKey::from_secret(c.jwt_secret.expose().as_bytes())
                .map_err(|e| e.to_string())?,
            hs: DecodingKey::from_secret(c.jwt_secret.expose().as_bytes())
                .map_err(|e| e.to_string())?,
            public,
            issuer: c.jwt_issuer.clone(),
            audience: c.jwt_audience.clone(),
            ttl: c.access_token_ttl as i64,
            revoked: Arc::default(),
        })
    }

    /// Mints an HS256 access token valid for `ttl_secs` (the configured TTL when `None`).
    pub fn mint(
        &self,
        sub: &str,
        org: i64,
        role: &str,
        topics: Option<Vec<String>>,
        ttl_secs: Option<i64>,
    ) -> (String, Claims) {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_owned(),
            org,
            role: role.to_owned(),
            iat: now,
            exp: now + ttl_secs.unwrap_or(self.ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            topics,
        };
        // HS256 encoding of a serializable struct cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, claims)
    }

    /// Validates a token: signature under the key its algorithm pins, `exp` (required), `iss`,
    /// `aud`, and the revocation list.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => (&self.hs, Algorithm::HS256),
            alg @ (Algorithm::RS256 | Algorithm::ES256) => match &self.public {
                Some(p) if p.alg == alg => (&p.key, alg),
                _ => return Err(AuthError::Invalid),
            },
            _ => return Err(AuthError::Invalid),
        };
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        if self
            .revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&data.claims.jti)
        {
            return Err(AuthError::Revoked);
        }
        Ok(data.claims)
    }

    pub fn revoke(&self, jti: &str) {
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(jti.to_owned());
    }
}

/// Argon2id hash of a password, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_config(&Config::for_tests()).expect("keys")
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let k = keys();
        let (t, c) = k.mint("1", 7, "admin", None, None);
        assert_eq!(k.verify(&t), Ok(c));
    }

    #[test]
    fn expired_forged_none_and_wrong_audience_tokens_are_refused() {
        let k = keys();
        let (expired, _) = k.mint("1", 7, "admin", None, Some(-60));
        assert_eq!(k.verify(&expired), Err(AuthError::Expired));

        let mut other = Config::for_tests();
        other.jwt_secret = crate::config::Secret::new("another-secret-another-secret-another");
        let (forged, _) = Keys::from_config(&other)
            .expect("keys")
            .mint("1", 7, "admin", None, None);
        assert_eq!(k.verify(&forged), Err(AuthError::Invalid));

        other = Config::for_tests();
        other.jwt_audience = "someone-else".into();
        let (wrong_aud, _) = Keys::from_config(&other)
            .expect("keys")
            .mint("1", 7, "admin", None, None);
        assert_eq!(k.verify(&wrong_aud), Err(AuthError::Invalid));

        // {"alg":"none"} with the same claims and no signature.
        use base64::Engine;
        let (good, _) = k.mint("1", 7, "admin", None, None);
        let payload = good.split('.').nth(1).expect("payload");
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            k.verify(&format!("{header}.{payload}.")),
            Err(AuthError::Invalid)
        );
        assert_eq!(k.verify("garbage"), Err(AuthError::Invalid));
    }

    #[test]
    fn a_revoked_jti_is_refused() {
        let k = keys();
        let (t, c) = k.mint("1", 7, "member", None, None);
        k.revoke(&c.jti);
        assert_eq!(k.verify(&t), Err(AuthError::Revoked));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
