//! Consul locks and holds: acquiring a KV key with a session, lock-delay retries, and the
//! tasks that follow a held key until it is released or lost.

use super::*;

pub(super) enum LockAttempt {
    Acquired(u64),
    /// Held by another session: wait for the key to change.
    Held,
    /// Free, but an invalidated session's lock-delay runs: it ends without any index
    /// change, so there is nothing to block on; retry shortly.
    LockDelay,
    SessionInvalid,
}

/// Pause between lock attempts while a lock-delay runs.
pub(super) const LOCK_DELAY_RETRY: Duration = Duration::from_millis(100);

impl Inner {
    pub(super) async fn try_lock(
        self: &Arc<Self>,
        session: &Session,
        path: &str,
        candidate: &[u8],
    ) -> CoordResult<LockAttempt> {
        // Run in its own task: if the caller is cancelled after Consul granted the lock, the
        // task hands it back instead of leaving a key held with no handle.
        let (sender, receiver) = oneshot::channel();
        let inner = Arc::clone(self);
        let session_id = session.id.clone();
        let path = path.to_owned();
        let op = serde_json::json!({"KV": {
            "Verb": "lock",
            "Key": path,
            "Value": BASE64.encode(candidate),
            "Session": session_id,
        }});
        tokio::spawn(async move {
            let attempt = match inner.txn(vec![op]).await {
                Ok(TxnOutcome::Committed(token)) => Ok(LockAttempt::Acquired(token)),
                Ok(TxnOutcome::Rejected { what, .. }) => {
                    if what.contains("invalid session") || what.contains("missing session") {
                        Ok(LockAttempt::SessionInvalid)
                    } else if what.contains("lock delay") {
                        Ok(LockAttempt::LockDelay)
                    } else {
                        // "lock is already held"
                        Ok(LockAttempt::Held)
                    }
                }
                Err(error) => Err(error),
            };
            if let Err(Ok(LockAttempt::Acquired(_))) = sender.send(attempt) {
                inner.release_key(&path, &session_id).await;
            }
        });
        receiver.await.map_err(|_| CoordError::Closed)?
    }

    pub(super) async fn release_key(&self, path: &str, session_id: &str) {
        let request = rs_consul::CreateOrUpdateKeyRequest {
            key: path,
            release: session_id,
            ..Default::default()
        };
        self.http.count_request();
        let released = tokio::time::timeout(
            self.config.request_timeout,
            self.consul.create_or_update_key(request, Vec::new()),
        )
        .await;
        match released {
            Ok(Ok((true, _))) => {}
            Ok(Ok((false, _))) => tracing::debug!(%path, "release: the key was not held by us"),
            Ok(Err(error)) => tracing::warn!(%path, %error, "releasing failed"),
            Err(_) => tracing::warn!(%path, "releasing timed out"),
        }
    }

    pub(super) async fn acquire(
        self: &Arc<Self>,
        kind: HoldKind,
        name: &str,
        candidate: &[u8],
        wait_max: Duration,
    ) -> CoordResult<Hold> {
        validate_name(name)?;
        validate_value(candidate)?;
        self.ensure_open()?;
        let path = self.hold_path(kind, name);
        let claim = self.next_claim.fetch_add(1, Ordering::Relaxed);
        {
            let mut held = lock_map(&self.held);
            if held.contains_key(&path) {
                return Err(CoordError::AlreadyHeld {
                    name: name.to_owned(),
                });
            }
            held.insert(path.clone(), claim);
        }
        let result = self
            .acquire_claimed(kind, name, &path, claim, candidate, wait_max)
            .await;
        if result.is_err() {
            self.drop_claim(&path, claim);
        }
        result
    }

    /// Ends a claim; false if it was not current (already lost, or replaced).
    pub(super) fn drop_claim(&self, path: &str, claim: u64) -> bool {
        let mut held = lock_map(&self.held);
        if held.get(path) == Some(&claim) {
            held.remove(path);
            true
        } else {
            false
        }
    }

    pub(super) async fn acquire_claimed(
        self: &Arc<Self>,
        kind: HoldKind,
        name: &str,
        path: &str,
        claim: u64,
        candidate: &[u8],
        wait_max: Duration,
    ) -> CoordResult<Hold> {
        let deadline = Instant::now() + wait_max;
        let not_acquired = || CoordError::NotAcquired {
            what: name.to_owned(),
            waited: wait_max,
        };
        let mut index = 0;
        loop {
            let session = self.session().await?;
            match self.try_lock(&session, path, candidate).await? {
                LockAttempt::Acquired(token) => {
                    return Ok(self.hold(kind, name, path, claim, token, session));
                }
                LockAttempt::SessionInvalid => {
                    session.mark_lost(LossReason::SessionInvalidated);
                    continue;
                }
                LockAttempt::LockDelay => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Err(not_acquired());
                    }
                    tokio::time::sleep(remaining.min(LOCK_DELAY_RETRY)).await;
                    continue;
                }
                LockAttempt::Held => {}
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(not_acquired());
            }
            // Wait for the key to change: a blocking query, bounded by the deadline.
            let wait = remaining.min(self.config.watch_wait);
            let returned = match self.read(path, Some((index, wait))).await {
                Ok((_, returned)) => returned,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%path, %error, "waiting for a lock: read failed");
                    tokio::time::sleep(remaining.min(Duration::from_millis(200))).await;
                    continue;
                }
                Err(_) => return Err(not_acquired()),
            };
            // Changed (or the first read, which returns at once): try again.
            index = next_index(index, returned);
        }
    }

    pub(super) fn hold(
        self: &Arc<Self>,
        kind: HoldKind,
        name: &str,
        path: &str,
        claim: u64,
        token: u64,
        session: Arc<Session>,
    ) -> Hold {
        let (state, receiver) = watch::channel(HoldState::Held);
        let state = Arc::new(state);
        let lost_inner = Arc::clone(self);
        let lost_path = path.to_owned();
        let on_lost: Box<dyn FnOnce() + Send> = Box::new(move || {
            // Lost: this client may campaign for the key again.
            lost_inner.drop_claim(&lost_path, claim);
        });
        let follow = AbortOnDrop(tokio::spawn(follow_hold(
            on_lost,
            Arc::clone(&self.http),
            path.to_owned(),
            session.id.clone(),
            token,
            session.subscribe(),
            Arc::clone(&state),
            self.config.watch_wait,
            self.config.request_timeout,
            self.config.retry_backoff_max,
        )));
        let inner = Arc::clone(self);
        let release_path = path.to_owned();
        let release: Release = Box::new(move || {
            mark_hold_lost(&state, LossReason::Released);
            drop(follow);
            let current = inner.drop_claim(&release_path, claim);
            Box::pin(async move {
                // Only a claim that was still current holds the key through this session.
                if current && session.is_alive() {
                    inner.release_key(&release_path, &session.id).await;
                }
                Ok(())
            })
        });
        let fencing = match kind {
            HoldKind::Leadership => FencingToken::leadership(name, token),
            HoldKind::Lock => FencingToken::lock(name, token),
        };
        Hold::new(fencing, receiver, release)
    }
}

pub(super) fn mark_hold_lost(state: &watch::Sender<HoldState>, reason: LossReason) {
    state.send_if_modified(|current| {
        if *current == HoldState::Held {
            *current = HoldState::Lost(reason);
            true
        } else {
            false
        }
    });
}

/// Follows a held key: lost when the session is lost, or the key no longer shows this
/// acquisition (released or taken by another session).
#[allow(clippy::too_many_arguments)]
pub(super) async fn follow_hold(
    on_lost: Box<dyn FnOnce() + Send>,
    http: Arc<Http>,
    path: String,
    session_id: String,
    token: u64,
    mut session: watch::Receiver<SessionState>,
    state: Arc<watch::Sender<HoldState>>,
    wait: Duration,
    request_timeout: Duration,
    backoff_max: Duration,
) {
    let reason = follow_hold_until_lost(
        &http,
        &path,
        &session_id,
        token,
        &mut session,
        wait,
        request_timeout,
        backoff_max,
    )
    .await;
    // The claim goes first: whoever is woken by the state may campaign again at once.
    on_lost();
    mark_hold_lost(&state, reason);
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn follow_hold_until_lost(
    http: &Http,
    path: &str,
    session_id: &str,
    token: u64,
    session: &mut watch::Receiver<SessionState>,
    wait: Duration,
    request_timeout: Duration,
    backoff_max: Duration,
) -> LossReason {
    let mut index = token;
    let mut backoff = Duration::from_millis(100);
    loop {
        if let SessionState::Lost(reason) = *session.borrow_and_update() {
            return reason;
        }
        tokio::select! {
            changed = session.changed() => {
                if changed.is_err() {
                    return LossReason::ClientClosed;
                }
            }
            read = read_key(http, path, Some((index, wait)), request_timeout) => match read {
                Ok((pair, returned)) => {
                    backoff = Duration::from_millis(100);
                    let ours = pair.is_some_and(|pair| {
                        pair.session.as_deref() == Some(session_id)
                            && pair.modify_index == token
                    });
                    if !ours {
                        return LossReason::Deposed;
                    }
                    index = next_index(index, returned);
                }
                Err(error) => {
                    tracing::debug!(%path, %error, "following a held key failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(backoff_max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consul::http::build_client;
    use std::sync::atomic::AtomicBool;

    /// A holder woken by the loss may campaign at once: its claim must be gone by then.
    #[tokio::test]
    async fn the_claim_is_dropped_before_the_holder_is_told() {
        let (_session, session_state) =
            watch::channel(SessionState::Lost(LossReason::SessionInvalidated));
        let (state, told) = watch::channel(HoldState::Held);
        let state = Arc::new(state);
        let told_before_drop = Arc::new(AtomicBool::new(false));
        let on_lost: Box<dyn FnOnce() + Send> = {
            let told_before_drop = Arc::clone(&told_before_drop);
            Box::new(move || {
                let told = *told.borrow() != HoldState::Held;
                told_before_drop.store(told, Ordering::SeqCst);
            })
        };
        // No request is made: the session is already lost.
        let address = "http://127.0.0.1:1";
        let client = build_client(&ConsulConfig::new(address)).unwrap();
        let http = Arc::new(Http::new(client, address, None));
        let wait = Duration::from_millis(10);
        follow_hold(
            on_lost,
            http,
            "lmq/holds/x".to_owned(),
            "s".to_owned(),
            1,
            session_state,
            Arc::clone(&state),
            wait,
            wait,
            wait,
        )
        .await;
        assert!(!told_before_drop.load(Ordering::SeqCst));
        assert_eq!(
            *state.borrow(),
            HoldState::Lost(LossReason::SessionInvalidated)
        );
    }
}
