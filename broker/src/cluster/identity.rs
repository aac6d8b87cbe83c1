//! How a broker proves to another that it is a broker of this cluster, so that only brokers
//! count as followers (a Fetch with a replica id moves the high watermark: from anyone else
//! it would get acks=all writes acknowledged that no follower has, CVE-2018-1288's class).
//!
//! Until brokers have authenticated identities of their own (TLS/SASL principals), the proof
//! is a secret shared through the coordinator: the first broker to join stores a random one,
//! every broker reads it. A replica fetcher opens its connection with a SASL exchange of
//! LMQ's own mechanism carrying its node id and the secret; the connection is then that
//! broker's for its life. Pure functions: the handlers and the fetcher do the I/O.

use subtle::ConstantTimeEq;

/// The SASL mechanism name of the inter-broker proof.
pub const MECHANISM: &str = "LMQ-BROKER";

/// The coordinator key of the shared secret.
pub const SECRET_KEY: &str = "cluster/replication-secret";

/// A new random secret: 244 bits from two version-4 UUIDs (the OS's random source).
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The SASL token a broker sends: its node id, a NUL, the secret.
pub fn token(node_id: i32, secret: &str) -> Vec<u8> {
    let mut token = node_id.to_string().into_bytes();
    token.push(0);
    token.extend_from_slice(secret.as_bytes());
    token
}

/// The node id a token proves, when it carries the cluster's secret.
pub fn verify(token: &[u8], secret: &str) -> Option<i32> {
    let split = token.iter().position(|byte| *byte == 0)?;
    let (id, proof) = (&token[..split], &token[split + 1..]);
    let node_id: i32 = std::str::from_utf8(id).ok()?.parse().ok()?;
    // Constant time, so the answer's timing tells nothing of how much of a guess was right.
    let matches: bool = proof.ct_eq(secret.as_bytes()).into();
    (matches && node_id >= 0 && !secret.is_empty()).then_some(node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_with_the_secret_proves_its_node_id() {
        let secret = new_secret();
        assert_eq!(secret.len(), 64);
        assert_eq!(verify(&token(3, &secret), &secret), Some(3));
    }

    #[test]
    fn anything_else_proves_nothing() {
        let secret = new_secret();
        assert_eq!(verify(&token(3, &new_secret()), &secret), None);
        assert_eq!(verify(&token(3, ""), &secret), None);
        assert_eq!(verify(&token(-1, &secret), &secret), None);
        assert_eq!(verify(b"3", &secret), None);
        assert_eq!(verify(b"x\0", &secret), None);
        assert_eq!(verify(&[], &secret), None);
        assert_eq!(verify(&token(3, ""), ""), None);
        // A prefix of the secret is not the secret.
        assert_eq!(verify(&token(3, &secret[..63]), &secret), None);
    }
}
