//! A Consul session with a holder-side lease: what leaderships and locks are tied to.
//!
//! The session is tied (`NodeChecks`) to a TTL health check of its own, registered on the
//! agent as a tiny service (so Consul reaps it after the holder died), and to nothing else:
//! not to the agent's `serfHealth`, because a node failure would then invalidate the session
//! at a moment the holder cannot bound. The check and the session have the same TTL; a
//! renewal passes the check and renews the session. The check turns critical `ttl` after the
//! last pass (invalidating the session: that is how a killed holder is replaced within
//! TTL + lock-delay; a bare session TTL is only enforced after 2 x TTL), and the session TTL
//! covers an agent that died with the check passing.
//!
//! The `lease` state machine decides renewals and the step-down; a second task follows the
//! session with a blocking query, so an invalidation is reported at once.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::ConsulConfig;
use super::http::{Http, blocking_params, blocking_timeout, go_duration};
use crate::coordinator::AbortOnDrop;
use crate::error::{CoordError, CoordResult, LossReason};
use crate::lease::{Lease, LeaseAction, LeaseConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    Alive,
    Lost(LossReason),
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    check_service_id: String,
    state: Arc<watch::Sender<SessionState>>,
    http: Arc<Http>,
    request_timeout: Duration,
    _keepalive: AbortOnDrop,
    _follow: AbortOnDrop,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

/// Moves `Alive` to `Lost(reason)`; the first loss wins.
pub(crate) fn mark_lost(state: &watch::Sender<SessionState>, reason: LossReason) {
    state.send_if_modified(|current| {
        if *current == SessionState::Alive {
            *current = SessionState::Lost(reason);
            true
        } else {
            false
        }
    });
}

impl Session {
    pub(crate) async fn create(http: Arc<Http>, config: &ConsulConfig) -> CoordResult<Session> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let check_service_id = format!("{}-session-{suffix}", config.service_name);
        let timeout = config.request_timeout;
        let register = serde_json::json!({
            "ID": check_service_id,
            "Name": format!("{}-session", config.service_name),
            "Check": {
                "CheckID": check_service_id,
                "Name": "LMQ coordination session keepalive",
                "TTL": go_duration(config.session_ttl),
                "Status": "passing",
                "DeregisterCriticalServiceAfter": "1m",
            },
        });
        let epoch = Instant::now();
        http.call_ok(
            Method::PUT,
            "/v1/agent/service/register",
            Some(register.to_string().into_bytes()),
            timeout,
        )
        .await?;
        let body = serde_json::json!({
            "Name": format!("lmq {}", config.key_prefix),
            "TTL": go_duration(config.session_ttl),
            "LockDelay": go_duration(config.lock_delay),
            "Behavior": "release",
            "NodeChecks": [check_service_id],
        })
        .to_string();
        // The agent syncs the new check to the servers as part of the registration call,
        // but without a server leader that sync can lag: retry "Missing check" a little.
        let deadline = Instant::now() + timeout;
        let created = loop {
            let reply = http
                .call(
                    Method::PUT,
                    "/v1/session/create",
                    Some(body.clone().into_bytes()),
                    timeout,
                )
                .await?;
            if reply.status == 200 {
                break serde_json::from_slice::<Created>(&reply.body).map_err(|error| {
                    CoordError::Malformed {
                        path: "/v1/session/create".into(),
                        detail: error.to_string(),
                    }
                })?;
            }
            if Instant::now() >= deadline || !reply.body_text().contains("Missing check") {
                deregister_check(&http, &check_service_id, timeout).await;
                return Err(CoordError::Status {
                    method: "PUT",
                    path: "/v1/session/create".into(),
                    status: reply.status,
                    body: reply.body_text(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (state, _) = watch::channel(SessionState::Alive);
        let state = Arc::new(state);
        let lease = Lease::new(
            LeaseConfig::for_ttl(config.session_ttl, config.step_down_margin),
            Duration::ZERO,
        );
        let keepalive = tokio::spawn(keepalive(
            Arc::clone(&http),
            created.id.clone(),
            check_service_id.clone(),
            Arc::clone(&state),
            lease,
            epoch,
            timeout,
        ));
        let follow = tokio::spawn(follow(
            Arc::clone(&http),
            created.id.clone(),
            Arc::clone(&state),
            config.watch_wait,
            timeout,
            config.retry_backoff_max,
        ));
        tracing::debug!(session = %created.id, "consul session created");
        Ok(Session {
            id: created.id,
            check_service_id,
            state,
            http,
            request_timeout: timeout,
            _keepalive: AbortOnDrop(keepalive),
            _follow: AbortOnDrop(follow),
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        *self.state.borrow() == SessionState::Alive
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    pub(crate) fn mark_lost(&self, reason: LossReason) {
        mark_lost(&self.state, reason);
    }

    /// Ends the session on the servers (releasing its keys at once, without lock-delay) and
    /// removes its check.
    pub(crate) async fn destroy(&self, reason: LossReason) {
        self.mark_lost(reason);
        let path = format!("/v1/session/destroy/{}", self.id);
        if let Err(error) = self
            .http
            .call_ok(Method::PUT, &path, None, self.request_timeout)
            .await
        {
            tracing::warn!(session = %self.id, %error, "destroying the consul session failed");
        }
        deregister_check(&self.http, &self.check_service_id, self.request_timeout).await;
    }
}

async fn deregister_check(http: &Http, service_id: &str, timeout: Duration) {
    let path = format!("/v1/agent/service/deregister/{service_id}");
    if let Err(error) = http.call_ok(Method::PUT, &path, None, timeout).await {
        tracing::warn!(%service_id, %error, "deregistering the session check failed");
    }
}

enum Renewal {
    Renewed,
    Gone,
    Failed,
}

async fn renew(http: &Http, session: &str, check: &str, timeout: Duration) -> Renewal {
    let pass_path = format!("/v1/agent/check/pass/{check}");
    let renew_path = format!("/v1/session/renew/{session}");
    let (pass, renewed) = tokio::join!(
        http.call(Method::PUT, &pass_path, None, timeout),
        http.call(Method::PUT, &renew_path, None, timeout),
    );
    match (pass, renewed) {
        (_, Ok(reply)) if reply.status == 404 => Renewal::Gone,
        (Ok(pass), _) if pass.status == 404 => Renewal::Gone,
        (Ok(pass), Ok(reply)) if pass.status == 200 && reply.status == 200 => Renewal::Renewed,
        (pass, renewed) => {
            tracing::debug!(%session, ?pass, ?renewed, "session renewal failed");
            Renewal::Failed
        }
    }
}

/// Drives the lease: renew on schedule, step down when it runs out.
async fn keepalive(
    http: Arc<Http>,
    session: String,
    check: String,
    state: Arc<watch::Sender<SessionState>>,
    mut lease: Lease,
    epoch: Instant,
    timeout: Duration,
) {
    let mut changes = state.subscribe();
    loop {
        if *changes.borrow_and_update() != SessionState::Alive {
            return;
        }
        let now = epoch.elapsed();
        match lease.next(now) {
            LeaseAction::StepDown => {
                tracing::warn!(%session, "consul session not renewed in time: stepping down");
                mark_lost(&state, LossReason::LeaseExpired);
                return;
            }
            LeaseAction::WaitUntil(until) => {
                tokio::select! {
                    () = tokio::time::sleep_until(epoch + until) => {}
                    _ = changes.changed() => {}
                }
            }
            LeaseAction::Renew => {
                let step_down = epoch + lease.step_down_at();
                tokio::select! {
                    outcome = renew(&http, &session, &check, timeout) => match outcome {
                        Renewal::Renewed => lease.renewal_succeeded(now),
                        Renewal::Gone => {
                            lease.invalidated();
                            mark_lost(&state, LossReason::SessionInvalidated);
                            return;
                        }
                        Renewal::Failed => lease.renewal_failed(epoch.elapsed()),
                    },
                    // A renewal still in flight at the step-down time does not delay it.
                    () = tokio::time::sleep_until(step_down) => {}
                }
            }
        }
    }
}

/// Follows the session with blocking queries: it disappearing is reported at once.
async fn follow(
    http: Arc<Http>,
    session: String,
    state: Arc<watch::Sender<SessionState>>,
    wait: Duration,
    timeout: Duration,
    backoff_max: Duration,
) {
    let mut index = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *state.borrow() != SessionState::Alive {
            return;
        }
        let path = format!(
            "/v1/session/info/{session}?{}",
            blocking_params(index, wait)
        );
        match http
            .call_ok(Method::GET, &path, None, blocking_timeout(wait, timeout))
            .await
        {
            Ok(reply) => {
                backoff = Duration::from_millis(100);
                match serde_json::from_slice::<Option<Vec<serde_json::Value>>>(&reply.body) {
                    Ok(None) => {
                        mark_lost(&state, LossReason::SessionInvalidated);
                        return;
                    }
                    Ok(Some(sessions)) if sessions.is_empty() => {
                        mark_lost(&state, LossReason::SessionInvalidated);
                        return;
                    }
                    Ok(Some(_)) => {}
                    Err(error) => {
                        tracing::warn!(%session, %error, "malformed session info; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(backoff_max);
                        continue;
                    }
                }
                index = next_index(index, reply.index);
                if index == 0 {
                    tokio::time::sleep(backoff).await;
                }
            }
            Err(error) => {
                tracing::debug!(%session, %error, "following the session failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }
}

/// The index for the next blocking query, as Consul's docs require: reset to 0 when it goes
/// backwards (e.g. a server restored from a snapshot).
pub(crate) fn next_index(previous: u64, returned: Option<u64>) -> u64 {
    match returned {
        Some(index) if index >= previous => index,
        _ => 0,
    }
}
