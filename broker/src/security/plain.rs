//! SASL/PLAIN (RFC 4616) as Kafka's `PlainServerCallbackHandler` serves it: the users and
//! passwords come from a file of the broker's config (Kafka keeps them in the JAAS
//! configuration; LMQ in a TOML file `name = "password"` under `[users]`). Use it only over
//! TLS (SASL_SSL): the password crosses the wire.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("reading the PLAIN users file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("Authentication failed: invalid SASL/PLAIN message")]
    Malformed,
    #[error("Authentication failed: Invalid username or password")]
    Credentials,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, String>,
}

/// The users PLAIN accepts.
#[derive(Clone, Default)]
pub struct PlainUsers(BTreeMap<String, String>);

impl std::fmt::Debug for PlainUsers {
    // Never the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PlainUsers")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PlainUsers {
    pub fn load(path: &Path) -> Result<Self, PlainError> {
        let failed = |reason: String| PlainError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
        let file: UsersFile = toml::from_str(&text).map_err(|error| failed(error.to_string()))?;
        Ok(Self(file.users))
    }

    /// The user `message` (`[authzid] NUL authcid NUL password`) proves.
    pub fn verify(&self, message: &[u8]) -> Result<String, PlainError> {
        let mut parts = message.split(|byte| *byte == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PlainError::Malformed);
        };
        let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
        // As Kafka: an authorization id other than the user is refused.
        if user.is_empty() || (!authzid.is_empty() && authzid != user.as_bytes()) {
            return Err(PlainError::Malformed);
        }
        let Some(expected) = self.0.get(user) else {
            return Err(PlainError::Credentials);
        };
        let matches: bool = expected.as_bytes().ct_eq(password).into();
        if matches {
            Ok(user.to_string())
        } else {
            Err(PlainError::Credentials)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn users() -> PlainUsers {
        PlainUsers([("alice".to_string(), "secret".to_string())].into())
    }

    #[test]
    fn the_right_password_proves_the_user() {
        assert_eq!(users().verify(b"\0alice\0secret").unwrap(), "alice");
        assert_eq!(users().verify(b"alice\0alice\0secret").unwrap(), "alice");
    }

    #[test]
    fn wrong_passwords_unknown_users_and_bad_messages_are_refused() {
        assert_eq!(
            users().verify(b"\0alice\0wrong"),
            Err(PlainError::Credentials)
        );
        assert_eq!(
            users().verify(b"\0bob\0secret"),
            Err(PlainError::Credentials)
        );
        assert_eq!(
            users().verify(b"bob\0alice\0secret"),
            Err(PlainError::Malformed)
        );
        assert_eq!(users().verify(b"alice\0secret"), Err(PlainError::Malformed));
        assert!(!format!("{:?}", users()).contains("secret"));
    }

    #[test]
    fn the_users_file_is_read_and_its_mistakes_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "[users]\nalice = \"secret\"\n").unwrap();
        assert_eq!(
            PlainUsers::load(&path)
                .unwrap()
                .verify(b"\0alice\0secret")
                .unwrap(),
            "alice"
        );
        std::fs::write(&path, "alice = \"secret\"\n").unwrap();
        assert!(matches!(
            PlainUsers::load(&path),
            Err(PlainError::File { .. })
        ));
    }
}
