//! SaslAuthenticate: the tokens of the mechanism the handshake chose. LMQ's inter-broker
//! mechanism: a token carrying the cluster's replication secret makes the connection that
//! broker's (its Fetch requests then count as a follower's). PLAIN: one token, checked against
//! the users file. SCRAM-SHA-256/512: the client's first message (answered with the salt and
//! iterations of the user's credential from the coordinator), then its proof (answered with
//! the server's signature). OAUTHBEARER: the client's bearer token, checked against the JWKS;
//! a token that does not verify is answered with RFC 7628's error, which the client
//! acknowledges before the exchange fails. Success makes the connection the user's principal;
//! a failure is answered SASL_AUTHENTICATION_FAILED (with Kafka's messages) and the connection
//! closed, as Kafka does.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::{Method, RequestContext, SaslState, str_bytes};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::cluster::credentials;
use crate::security::oauthbearer::OauthError;
use crate::security::scram::{ScramError, ServerExchange, parse_client_first};
use crate::security::{Principal, SaslMechanism};

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &RequestContext,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let mut response = SaslAuthenticateResponse::default();
    let session = &context.session;
    let outcome = match session.sasl_state() {
        // As Kafka's PLAINTEXT listener (and its SASL listener once authenticated):
        // ILLEGAL_SASL_STATE, and the connection goes on.
        SaslState::Plain => Err((
            ResponseError::IllegalSaslState,
            "SaslAuthenticate without a SaslHandshake on this connection".to_string(),
        )),
        SaslState::Broker(_) | SaslState::Authenticated => Err((
            ResponseError::IllegalSaslState,
            "this connection is authenticated already".to_string(),
        )),
        SaslState::Authenticating(Method::Broker) => {
            match cluster.verify_replica(&request.auth_bytes) {
                Some(node_id) => {
                    session.set_sasl_state(SaslState::Broker(node_id));
                    session.set_principal(Principal::broker(node_id));
                    Ok(Vec::new())
                }
                None => {
                    tracing::warn!(peer = %context.peer, "a broker proof without this cluster's secret");
                    Err((
                        ResponseError::SaslAuthenticationFailed,
                        "authentication failed: not a broker of this cluster".to_string(),
                    ))
                }
            }
        }
        SaslState::Authenticating(Method::Client(SaslMechanism::Plain)) => broker
            .plain_users
            .verify(&request.auth_bytes)
            .map_err(|error| error.to_string())
            .and_then(|user| authenticated(broker, context, &user, None, &mut response))
            .map(|()| Vec::new())
            .map_err(|message| (ResponseError::SaslAuthenticationFailed, message)),
        SaslState::Authenticating(Method::Client(SaslMechanism::OauthBearer)) => {
            oauth_step(broker, context, &request.auth_bytes, &mut response)
                .map_err(|message| (ResponseError::SaslAuthenticationFailed, message))
        }
        SaslState::Authenticating(Method::Client(mechanism)) => {
            match scram_step(cluster, context, mechanism, &request.auth_bytes).await {
                Ok(ScramStep::Challenge(bytes)) => Ok(bytes),
                Ok(ScramStep::Done { user, last }) => {
                    authenticated(broker, context, &user, None, &mut response)
                        .map(|()| last)
                        .map_err(|message| (ResponseError::SaslAuthenticationFailed, message))
                }
                Err(error) => {
                    // As Kafka: the client learns nothing of why (whether the user exists).
                    tracing::debug!(peer = %context.peer, %error, "SCRAM refused");
                    Err((
                        ResponseError::SaslAuthenticationFailed,
                        invalid_credentials(context, mechanism),
                    ))
                }
            }
        }
    };
    match outcome {
        Ok(bytes) => response.auth_bytes = bytes.into(),
        Err((error, message)) => {
            response.error_code = error.code();
            response.error_message = Some(str_bytes(message));
            if error == ResponseError::SaslAuthenticationFailed {
                // As Kafka: the failure is answered, then the connection closed, so each
                // guess costs a new connection.
                tracing::info!(peer = %context.peer, "SASL authentication failed");
                session.close_after_answer();
            }
        }
    }
    response
}

/// The connection is `user`'s from now on, for `connections_max_reauth_ms` when set (the
/// answer says so: KIP-368's `session_lifetime_ms`), and then no longer than the credential
/// holds (`credential_ms`: an OAUTHBEARER token's remaining life), as Kafka. A
/// re-authentication must prove the principal the connection had.
fn authenticated(
    broker: &Broker,
    context: &RequestContext,
    user: &str,
    credential_ms: Option<i64>,
    response: &mut SaslAuthenticateResponse,
) -> Result<(), String> {
    let principal = Principal::user(user);
    let session = &context.session;
    if let Some(before) = session.reauthenticating()
        && before != principal
    {
        return Err(format!(
            "Cannot change principals during re-authentication from {before}: {principal}"
        ));
    }
    tracing::debug!(peer = %context.peer, %principal, "authenticated");
    session.set_reauthenticating(None);
    session.set_sasl_state(SaslState::Authenticated);
    session.set_principal(principal);
    let reauth_ms = i64::try_from(broker.config.connections_max_reauth_ms).unwrap_or(i64::MAX);
    let lifetime_ms = match credential_ms {
        Some(credential_ms) if reauth_ms > 0 => reauth_ms.min(credential_ms.max(0)),
        _ => reauth_ms,
    };
    session.set_session_end(
        (lifetime_ms > 0).then(|| broker.clock.now_ms().saturating_add(lifetime_ms)),
    );
    response.session_lifetime_ms = lifetime_ms;
    Ok(())
}

/// Kafka's answer to a mechanism's refusal that must not say why (its `SaslException`s).
fn invalid_credentials(context: &RequestContext, mechanism: SaslMechanism) -> String {
    let during = if context.session.reauthenticating().is_some() {
        "re-authentication"
    } else {
        "authentication"
    };
    format!(
        "Authentication failed during {during} due to invalid credentials with SASL mechanism {}",
        mechanism.name()
    )
}

/// The error an OAUTHBEARER token that does not verify is answered with (RFC 7628 3.2.2;
/// Kafka's validator reports every such token as `invalid_token`).
const INVALID_TOKEN: &str = r#"{"status":"invalid_token"}"#;

/// One OAUTHBEARER message, as Kafka's `OAuthBearerSaslServer`: a client initial response
/// whose token verifies authenticates its subject; one whose token does not is answered with
/// the error as a challenge, and the client's %x01 after it fails the exchange with that
/// error as the message (anything else after it is a new initial response). A message that
/// is no initial response fails at once.
fn oauth_step(
    broker: &Broker,
    context: &RequestContext,
    message: &[u8],
    response: &mut SaslAuthenticateResponse,
) -> Result<Vec<u8>, String> {
    if let Some(error) = context.session.take_oauth_error()
        && message == [0x01]
    {
        return Err(error);
    }
    let Some(rules) = broker.oauth_rules.as_ref() else {
        tracing::warn!("OAUTHBEARER is enabled without a key set");
        return Err(invalid_credentials(context, SaslMechanism::OauthBearer));
    };
    let now_ms = broker.clock.now_ms();
    match rules.verify(message, now_ms) {
        Ok(token) => authenticated(
            broker,
            context,
            &token.principal,
            Some(token.expires_ms.saturating_sub(now_ms)),
            response,
        )
        .map(|()| Vec::new()),
        Err(OauthError::Malformed) => Err(invalid_credentials(context, SaslMechanism::OauthBearer)),
        Err(error) => {
            tracing::info!(peer = %context.peer, %error, "OAUTHBEARER token refused");
            context.session.keep_oauth_error(INVALID_TOKEN.to_string());
            Ok(INVALID_TOKEN.as_bytes().to_vec())
        }
    }
}

/// Where a SCRAM exchange stands after a message.
enum ScramStep {
    /// The server-first message.
    Challenge(Vec<u8>),
    /// The client proved `user`; `last` is the server-final message.
    Done { user: String, last: Vec<u8> },
}

/// One SCRAM message: the first starts the exchange, the second ends it.
async fn scram_step(
    cluster: &ClusterNode,
    context: &RequestContext,
    mechanism: SaslMechanism,
    message: &[u8],
) -> Result<ScramStep, ScramError> {
    let scram = mechanism.scram().ok_or(ScramError::OutOfOrder)?;
    let started = context.session.take_scram();
    let Some(exchange) = started else {
        let first = parse_client_first(message)?;
        let credential = credentials::credential(&*cluster.coordinator, &first.user, scram)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "reading SCRAM credentials");
                ScramError::Credentials
            })?
            .ok_or(ScramError::Credentials)?;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let exchange = ServerExchange::start(scram, first, credential, &nonce);
        let challenge = exchange.challenge().to_vec();
        context.session.keep_scram(exchange);
        return Ok(ScramStep::Challenge(challenge));
    };
    let (user, last) = exchange.finish(message)?;
    Ok(ScramStep::Done { user, last })
}

impl super::ErrorCodes for lmq_wire::protocol::messages::SaslAuthenticateResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
