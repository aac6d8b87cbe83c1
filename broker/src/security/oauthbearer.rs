//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255/KIP-768 broker side): the client's initial
//! response carries a JWT bearer token; the broker checks its signature against the keys of
//! a JWKS file (by the token's `kid`, with the key's algorithm: never `none`), its issuer and
//! audience when configured, and its expiry and not-before on the broker's clock; the
//! principal is the subject claim (`sub` unless configured otherwise). Pure apart from
//! loading the key file; a key set from a URL is fetched by `jwks.rs` and handed over with
//! `set_keys`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

/// Clock skew allowed on `exp` and `nbf` (Kafka's `sasl.oauthbearer.clock.skew.seconds`).
const CLOCK_SKEW_MS: i64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OauthError {
    #[error("reading the OAUTHBEARER JWKS file {path}: {reason}")]
    Keys { path: String, reason: String },
    #[error("Authentication failed: invalid OAUTHBEARER message")]
    Malformed,
    #[error("Authentication failed: the token is not valid ({0})")]
    Invalid(String),
    #[error("Authentication failed: the token expired")]
    Expired,
}

/// The default of `[sasl] oauthbearer_jwks_refresh_ms` (Kafka's
/// `sasl.oauthbearer.jwks.endpoint.refresh.ms`: one hour).
pub const JWKS_REFRESH_MS: u64 = 3_600_000;

/// What a token must say besides its signature (`[sasl] oauthbearer_expected_*`,
/// `oauthbearer_sub_claim_name`).
#[derive(Debug, Clone)]
pub struct TokenChecks {
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub subject_claim: String,
}

/// How tokens are checked (`[sasl] oauthbearer_*`): the keys in force and the checks.
#[derive(Debug)]
pub struct TokenRules {
    keys: RwLock<JwkSet>,
    checks: TokenChecks,
}

/// A checked token: who it names and until when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub principal: String,
    pub expires_ms: i64,
}

/// A JWKS document's keys; one without any is refused (it could verify nothing).
pub fn parse_keys(text: &str) -> Result<JwkSet, String> {
    let keys: JwkSet = serde_json::from_str(text).map_err(|error| error.to_string())?;
    if keys.keys.is_empty() {
        return Err("no key in it".to_string());
    }
    Ok(keys)
}

impl TokenRules {
    /// Reads the JWKS file. Blocking (a small file, at start).
    pub fn load(jwks_file: &Path, checks: TokenChecks) -> Result<Self, OauthError> {
        let failed = |reason: String| OauthError::Keys {
            path: jwks_file.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(jwks_file).map_err(|error| failed(error.to_string()))?;
        let keys = parse_keys(&text).map_err(failed)?;
        Ok(Self {
            keys: RwLock::new(keys),
            checks,
        })
    }

    /// Rules whose keys come later (`set_keys`, from a JWKS URL); until then every token is
    /// refused.
    pub fn without_keys(checks: TokenChecks) -> Self {
        Self {
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            checks,
        }
    }

    /// The key set tokens are checked against from now on.
    pub fn set_keys(&self, keys: JwkSet) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }

    /// The token of a client's initial response (`n,,\x01auth=Bearer <token>\x01...\x01`),
    /// checked at `now_ms`.
    pub fn verify(&self, message: &[u8], now_ms: i64) -> Result<Token, OauthError> {
        let token = bearer_token(message)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| OauthError::Invalid(error.to_string()))?;
        let decoding = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let key = match &header.kid {
                Some(kid) => keys.find(kid),
                // Without a key id, only a single-key set can tell which key signed.
                None if keys.keys.len() == 1 => keys.keys.first(),
                None => None,
            }
            .ok_or_else(|| OauthError::Invalid("no key in the JWKS for the token's kid".into()))?;
            DecodingKey::from_jwk(key).map_err(|error| OauthError::Invalid(error.to_string()))?
        };
        // The token's algorithm must be the key's family; jsonwebtoken refuses `none`.
        let mut validation = Validation::new(header.alg);
        // Time is checked below on the broker's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::new();
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .map_err(|error| OauthError::Invalid(error.to_string()))?
            .claims;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let expires_s = number("exp").ok_or_else(|| OauthError::Invalid("no exp claim".into()))?;
        let expires_ms = expires_s.saturating_mul(1000);
        if expires_ms.saturating_add(CLOCK_SKEW_MS) <= now_ms {
            return Err(OauthError::Expired);
        }
        if let Some(not_before) = number("nbf")
            && not_before.saturating_mul(1000) > now_ms.saturating_add(CLOCK_SKEW_MS)
        {
            return Err(OauthError::Invalid("not valid yet (nbf)".into()));
        }
        if let Some(issuer) = &self.checks.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(OauthError::Invalid(format!("issuer is not {issuer}")));
        }
        if !self.checks.audience.is_empty() {
            let audiences: Vec<&str> = match claims.get("aud") {
                Some(Value::String(one)) => vec![one.as_str()],
                Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !audiences.iter().any(|audience| {
                self.checks
                    .audience
                    .iter()
                    .any(|expected| expected == audience)
            }) {
                return Err(OauthError::Invalid(format!(
                    "audience is none of {}",
                    self.checks.audience.join(", ")
                )));
            }
        }
        let principal = claims
            .get(&self.checks.subject_claim)
            .and_then(Value::as_str)
            .filter(|subject| !subject.is_empty())
            .ok_or_else(|| {
                OauthError::Invalid(format!("no {} claim", self.checks.subject_claim))
            })?;
        Ok(Token {
            principal: principal.to_string(),
            expires_ms,
        })
    }
}

/// The bearer token of RFC 7628's client initial response.
fn bearer_token(message: &[u8]) -> Result<&str, OauthError> {
    let text = std::str::from_utf8(message).map_err(|_| OauthError::Malformed)?;
    let (gs2, rest) = text.split_once('\u{1}').ok_or(OauthError::Malformed)?;
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return Err(OauthError::Malformed);
    }
    rest.split('\u{1}')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(OauthError::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_bearer_token_is_found_in_the_initial_response() {
        assert_eq!(
            bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            bearer_token(b"n,a=alice,\x01host=x\x01auth=Bearer t\x01\x01").unwrap(),
            "t"
        );
        for bad in [
            &b"auth=Bearer t"[..],
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01\x01",
            b"\xff",
        ] {
            assert_eq!(bearer_token(bad), Err(OauthError::Malformed), "{bad:?}");
        }
    }
}
