//! ApiVersions: the one table of supported versions, shared with the dispatcher.

use lmq_wire::SUPPORTED_APIS;
use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::api_versions_response::ApiVersion;
use lmq_wire::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|api| {
            let mut version = ApiVersion::default();
            version.api_key = api.api_key as i16;
            version.min_version = api.min_version;
            version.max_version = api.max_version;
            version
        })
        .collect()
}

pub fn handle(_request: &ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = api_keys();
    response
}

/// The answer to an ApiVersions request of a version we do not know: v0 with
/// UNSUPPORTED_VERSION and our versions, so the client retries with one we support.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.api_keys = api_keys();
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::ApiVersionsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
