//! GETs from a broker's admin HTTP endpoint (`admin_listen`), for the state the Kafka
//! protocol has no message for (the log cleaner's). A plain HTTP/1.0 request, so the answer
//! is never chunked and ends when the connection closes; its size and time are bounded.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer read.
const RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Connecting, sending and reading the whole answer together.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `host:port` of an `--admin` value (`http://` and a trailing `/` accepted).
pub fn admin_address(value: &str) -> Result<String> {
    if value.starts_with("https://") {
        bail!("--admin {value}: the admin endpoint speaks plain HTTP; give http://HOST:PORT");
    }
    let address = value.strip_prefix("http://").unwrap_or(value);
    let address = address.trim_end_matches('/');
    if address.is_empty() || address.contains('/') || !address.contains(':') {
        bail!("--admin {value}: expected HOST:PORT (a broker's admin_listen)");
    }
    Ok(address.to_string())
}

/// GET `path` from the admin endpoint at `address` (`host:port`) as JSON; `token` is sent as
/// `Authorization: Bearer` (the broker's `admin_token_file`).
pub async fn get_json(address: &str, path: &str, token: Option<&str>) -> Result<serde_json::Value> {
    tokio::time::timeout(REQUEST_TIMEOUT, get(address, path, token))
        .await
        .with_context(|| format!("http://{address}{path}: no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn get(address: &str, path: &str, token: Option<&str>) -> Result<serde_json::Value> {
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to http://{address}"))?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n{authorization}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    (&mut stream)
        .take(RESPONSE_BYTES_MAX + 1)
        .read_to_end(&mut response)
        .await
        .with_context(|| format!("reading http://{address}{path}"))?;
    if response.len() as u64 > RESPONSE_BYTES_MAX {
        bail!("http://{address}{path}: the answer is larger than {RESPONSE_BYTES_MAX} bytes");
    }
    let (status, body) = split_response(&response)
        .with_context(|| format!("http://{address}{path}: not an HTTP answer"))?;
    if status != 200 {
        bail!(
            "http://{address}{path}: HTTP {status}: {}",
            String::from_utf8_lossy(body).trim()
        );
    }
    serde_json::from_slice(body).with_context(|| format!("http://{address}{path}: not JSON"))
}

/// The status code and body of a whole HTTP/1.x answer.
fn split_response(response: &[u8]) -> Option<(u16, &[u8])> {
    let head_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, &response[head_end + 4..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn admin_addresses_take_an_optional_scheme_and_slash() {
        assert_eq!(admin_address("127.0.0.1:9644").unwrap(), "127.0.0.1:9644");
        assert_eq!(
            admin_address("http://broker-1:9644/").unwrap(),
            "broker-1:9644"
        );
        assert!(admin_address("https://broker-1:9644").is_err());
        assert!(admin_address("broker-1").is_err());
        assert!(admin_address("http://broker-1:9644/v1/status").is_err());
    }

    #[test]
    fn an_answer_splits_into_status_and_body() {
        let answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno\n";
        assert_eq!(split_response(answer), Some((404, &b"no\n"[..])));
        assert_eq!(split_response(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(split_response(b"garbage\r\n\r\n"), None);
    }
}
