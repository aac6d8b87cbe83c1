//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the mechanisms' primitives (shared
//! with the broker's server side) and the client side of the exchange. Pure: the connection
//! carries the messages.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// Its SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The number Kafka's Describe/AlterUserScramCredentials use (`ScramMechanism.type`).
    pub fn code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The mechanism of a Kafka code.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// `HMAC(key, data)` with this mechanism's hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Self::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Self::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The most iterations a client computes for a server (Kafka's largest is 16,384; a hostile
/// server must not make the client spin).
const ITERATIONS_MAX: u32 = 100_000;

/// Why the client side of an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramClientError {
    /// The server's message is not what RFC 5802 says.
    #[error("invalid SCRAM message from the broker: {0}")]
    Malformed(&'static str),
    /// The server could not prove it knows the credential.
    #[error("the broker's SCRAM signature does not match: it does not know this password")]
    ServerSignature,
}

/// The client side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    nonce: String,
    first_bare: String,
    /// The server signature the final message must carry, once computed.
    expected: Option<String>,
}

impl ScramClient {
    /// An exchange for `user` with a random `nonce`.
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str, nonce: &str) -> Self {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            mechanism,
            password: password.to_string(),
            nonce: nonce.to_string(),
            first_bare: format!("n={name},r={nonce}"),
            expected: None,
        }
    }

    /// The client-first message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client-final message answering the server-first one.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramClientError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramClientError::Malformed("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in text.split(',') {
            if let Some(value) = attribute.strip_prefix("r=") {
                nonce = Some(value);
            } else if let Some(value) = attribute.strip_prefix("s=") {
                salt = BASE64.decode(value).ok();
            } else if let Some(value) = attribute.strip_prefix("i=") {
                iterations = value.parse::<u32>().ok();
            } else if attribute.starts_with("m=") {
                return Err(ScramClientError::Malformed("mandatory extension"));
            }
        }
        let nonce = nonce
            .filter(|nonce| nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len())
            .ok_or(ScramClientError::Malformed(
                "the nonce does not extend the client's",
            ))?;
        let salt = salt.ok_or(ScramClientError::Malformed("no salt"))?;
        let iterations = iterations
            .filter(|iterations| (1..=ITERATIONS_MAX).contains(iterations))
            .ok_or(ScramClientError::Malformed(
                "iterations missing or out of range",
            ))?;
        let mechanism = self.mechanism;
        let salted = mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(key, signature)| key ^ signature)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        self.expected = Some(BASE64.encode(mechanism.hmac(&server_key, auth_message.as_bytes())));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramClientError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramClientError::Malformed("not UTF-8"))?;
        let signature = text
            .strip_prefix("v=")
            .ok_or(ScramClientError::Malformed("no server signature"))?;
        let expected = self.expected.as_deref().ok_or(ScramClientError::Malformed(
            "final message before the first",
        ))?;
        if bool::from(signature.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(ScramClientError::ServerSignature)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, client side.
    #[test]
    fn the_rfc_7677_exchange_from_the_client() {
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(client.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let last = client
            .respond(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            last,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            client.verify(b"v=AAAA"),
            Err(ScramClientError::ServerSignature)
        );
    }

    #[test]
    fn a_server_nonce_not_extending_the_clients_or_absurd_iterations_are_refused() {
        let mut client = ScramClient::new(ScramMechanism::Sha512, "u", "p", "abc");
        assert!(client.respond(b"r=xyz,s=AAAA,i=4096").is_err());
        assert!(client.respond(b"r=abcx,s=AAAA,i=999999999").is_err());
    }
}
