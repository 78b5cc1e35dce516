//! Tokens: short-lived JWT access tokens (HS256), and the random secrets
//! behind refresh tokens and API keys, which are stored only as SHA-256
//! digests (they carry 256 bits of entropy: a slow hash adds nothing).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of API keys: `smk_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "smk_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "smr_";
/// Prefix of console session secrets (the cookie).
pub const CONSOLE_PREFIX: &str = "sms_";

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// The user's session epoch when the token was issued: a password
    /// change, a role change or disabling the user moves it on, and older
    /// tokens stop working at once.
    pub epoch: u32,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired: refresh it or log in again")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

/// Issues and checks access tokens with one HS256 secret.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Jwt {
    pub fn new(secret: &[u8], ttl: Duration) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user` at `epoch`, and when it expires.
    pub fn issue(&self, user: &str, epoch: u32) -> Result<(String, DateTime<Utc>), TokenError> {
        let now = Utc::now();
        let expires = now + self.ttl;
        let claims = Claims {
            sub: user.to_owned(),
            epoch,
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, expires))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// Whether a bearer credential looks like a JWT (three dot-separated parts).
pub fn is_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3
}

/// 256 random bits, URL-safe.
pub fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex SHA-256: how refresh tokens and API key secrets are stored.
pub fn digest(secret: &str) -> String {
    crate::store::audit::hex(&Sha256::digest(secret.as_bytes()))
}

/// A new API key `smk_<id>_<secret>` for key id `id`.
pub fn api_key(id: &str) -> Result<String, getrandom::Error> {
    Ok(format!("{API_KEY_PREFIX}{id}_{}", random_secret()?))
}

/// Splits an API key into its id and secret.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(API_KEY_PREFIX)?
        .split_once('_')
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_verify_and_carry_the_epoch() {
        let jwt = Jwt::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(900),
        );
        let (token, expires) = jwt.issue("alice", 3).unwrap();
        assert!(is_jwt(&token));
        let claims = jwt.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.epoch), ("alice", 3));
        assert_eq!(claims.exp, expires.timestamp());
        let other = Jwt::new(
            b"another secret, another signer!!",
            Duration::from_secs(900),
        );
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid)));
        let mut forged = token.clone();
        forged.pop();
        assert!(matches!(jwt.verify(&forged), Err(TokenError::Invalid)));
    }

    #[test]
    fn expired_tokens_are_told_apart() {
        let jwt = Jwt::new(b"0123456789abcdef0123456789abcdef", Duration::ZERO);
        let (token, _) = jwt.issue("alice", 0).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(jwt.verify(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn api_keys_split_into_id_and_secret() {
        let key = api_key("01abc").unwrap();
        let (id, secret) = parse_api_key(&key).unwrap();
        assert_eq!(id, "01abc");
        assert_eq!(secret.len(), 43);
        assert_eq!(parse_api_key("smk__x"), None);
        assert_eq!(parse_api_key("Bearer x"), None);
        assert_ne!(digest(secret), digest(&key));
    }
}
