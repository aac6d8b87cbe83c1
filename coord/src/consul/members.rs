//! Membership: registering a broker as a service instance with its health check, keeping a
//! TTL check passing, deregistering, and the health query that lists the healthy brokers.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;

use super::http::{Http, blocking_timeout, consul_error, go_duration};
use super::{Inner, lock_map};
use crate::coordinator::AbortOnDrop;
use crate::error::{CoordError, CoordResult};
use crate::types::{BrokerInfo, BrokerRegistration, Endpoint, HealthCheck};

/// The tag prefix of each advertised listener of a broker's service instance.
const LISTENER_TAG: &str = "listener=";

/// A broker registered through this client.
pub(super) struct Registered {
    /// The TTL of its TTL check (`None`: another kind of check).
    ttl: Option<Duration>,
    /// The task keeping its TTL check passing.
    _passer: Option<AbortOnDrop>,
}

/// How long one TTL pass may take: below the TTL/3 between the background passes, so a slow
/// agent cannot stretch the gap between two passes past the TTL, and a lease renewed by a
/// pass (sent, then answered within TTL/4) is renewed by one that reached the agent in time.
fn pass_timeout(ttl: Duration, request_timeout: Duration) -> Duration {
    request_timeout.min(ttl / 4)
}

impl Inner {
    /// `Coordinator::register_broker` once the registration is checked: the service with its
    /// check, and for a TTL check the task that keeps it passing.
    pub(super) async fn register(&self, registration: &BrokerRegistration) -> CoordResult<()> {
        let service_id = format!("{}-{}", self.config.service_name, registration.broker_id);
        let check_id = format!("{service_id}-health");
        let mut tags = vec![format!("broker_id={}", registration.broker_id)];
        if let Some(rack) = &registration.rack {
            tags.push(format!("rack={rack}"));
        }
        // rs-consul reads no service meta back: the listeners travel as tags.
        for endpoint in &registration.listeners {
            tags.push(format!("{LISTENER_TAG}{}", endpoint.to_text()));
        }
        let check = match &registration.health {
            HealthCheck::Ttl { ttl } => serde_json::json!({
                "CheckID": check_id,
                "Name": "LMQ broker TTL",
                "TTL": go_duration(*ttl),
                "Status": "passing",
                "DeregisterCriticalServiceAfter": "1m",
            }),
            HealthCheck::Tcp {
                address,
                interval,
                timeout,
            } => serde_json::json!({
                "CheckID": check_id,
                "Name": "LMQ broker TCP",
                "TCP": address,
                "Interval": go_duration(*interval),
                "Timeout": go_duration(*timeout),
                "Status": "passing",
                "DeregisterCriticalServiceAfter": "1m",
            }),
        };
        let body = serde_json::json!({
            "ID": service_id,
            "Name": self.config.service_name,
            "Address": registration.host,
            "Port": registration.port,
            "Tags": tags,
            "Check": check,
        });
        let body = body.to_string().into_bytes();
        self.http
            .call_ok(
                Method::PUT,
                "/v1/agent/service/register",
                Some(body.clone()),
                self.config.request_timeout,
            )
            .await?;
        let registered = match &registration.health {
            HealthCheck::Ttl { ttl } => Registered {
                ttl: Some(*ttl),
                _passer: Some(AbortOnDrop(tokio::spawn(keep_passing(
                    Arc::clone(&self.http),
                    check_id,
                    body,
                    *ttl,
                    pass_timeout(*ttl, self.config.request_timeout),
                )))),
            },
            HealthCheck::Tcp { .. } => Registered {
                ttl: None,
                _passer: None,
            },
        };
        lock_map(&self.registrations).insert(registration.broker_id, registered);
        Ok(())
    }

    /// `Coordinator::pass_ttl_check`: one pass of broker `broker_id`'s TTL check, now.
    pub(super) async fn pass_ttl_check(&self, broker_id: u32) -> CoordResult<()> {
        let ttl = lock_map(&self.registrations)
            .get(&broker_id)
            .and_then(|registered| registered.ttl)
            .ok_or(CoordError::NotRegistered { broker_id })?;
        let path = format!(
            "/v1/agent/check/pass/{}-{broker_id}-health",
            self.config.service_name
        );
        let timeout = pass_timeout(ttl, self.config.request_timeout);
        let reply = self.http.call(Method::PUT, &path, None, timeout).await?;
        match reply.status {
            200 => Ok(()),
            // The agent forgot the check (the background task registers it again).
            404 => Err(CoordError::NotRegistered { broker_id }),
            status => Err(CoordError::Status {
                method: "PUT",
                path,
                status,
                body: reply.body_text(),
            }),
        }
    }

    /// Removes broker `broker_id`'s service instance from the agent.
    pub(super) async fn deregister_service(&self, broker_id: u32) -> CoordResult<()> {
        let path = format!(
            "/v1/agent/service/deregister/{}-{broker_id}",
            self.config.service_name
        );
        self.http
            .call_ok(Method::PUT, &path, None, self.config.request_timeout)
            .await?;
        Ok(())
    }

    pub(super) async fn healthy_brokers(
        &self,
        blocking: Option<(u64, Duration)>,
    ) -> CoordResult<(Vec<BrokerInfo>, Option<u64>)> {
        healthy_brokers(
            &self.consul,
            &self.http,
            &self.config.service_name,
            blocking,
            self.config.request_timeout,
        )
        .await
    }
}

async fn healthy_brokers(
    consul: &rs_consul::Consul,
    http: &Http,
    service: &str,
    blocking: Option<(u64, Duration)>,
    request_timeout: Duration,
) -> CoordResult<(Vec<BrokerInfo>, Option<u64>)> {
    let request = rs_consul::GetServiceNodesRequest {
        service,
        passing: true,
        ..Default::default()
    };
    let (index, wait, timeout) = match blocking {
        Some((index, wait)) => (
            Some(index),
            Some(wait),
            blocking_timeout(wait, request_timeout),
        ),
        None => (None, None, request_timeout),
    };
    let options = rs_consul::QueryOptions {
        index,
        wait,
        timeout: Some(timeout),
        ..Default::default()
    };
    http.count_request();
    // rs-consul applies `timeout` itself; the outer one also bounds reading the body.
    let nodes = tokio::time::timeout(timeout, consul.get_service_nodes(request, Some(options)))
        .await
        .map_err(|_| CoordError::RequestTimeout {
            method: "GET",
            path: format!("/v1/health/service/{service}"),
            timeout,
        })?
        .map_err(|source| {
            consul_error(
                "health query",
                "GET",
                &format!("/v1/health/service/{service}"),
                source,
            )
        })?;
    let mut brokers: Vec<BrokerInfo> = nodes
        .response
        .into_iter()
        .filter_map(|node| {
            let tag = |name: &str| {
                node.service
                    .tags
                    .iter()
                    .find_map(|tag| tag.strip_prefix(name).map(str::to_owned))
            };
            let Some(broker_id) = tag("broker_id=").and_then(|id| id.parse::<u32>().ok()) else {
                tracing::warn!(id = %node.service.id, "service instance without broker_id tag");
                return None;
            };
            let host = if node.service.address.is_empty() {
                node.node.address.clone()
            } else {
                node.service.address.clone()
            };
            let listeners = node
                .service
                .tags
                .iter()
                .filter_map(|tag| tag.strip_prefix(LISTENER_TAG).and_then(Endpoint::parse))
                .collect();
            Some(BrokerInfo {
                broker_id,
                host,
                port: node.service.port,
                rack: tag("rack="),
                listeners,
            })
        })
        .collect();
    brokers.sort();
    brokers.dedup_by_key(|broker| broker.broker_id);
    Ok((brokers, Some(nodes.index).filter(|index| *index > 0)))
}

/// Keeps a broker's TTL check passing, every TTL/3, each pass bounded by `timeout` (below
/// TTL/3). An agent that forgot the check (restarted without its data, e.g. a dev agent)
/// answers 404: the broker is registered again.
async fn keep_passing(
    http: Arc<Http>,
    check_id: String,
    registration: Vec<u8>,
    ttl: Duration,
    timeout: Duration,
) {
    let path = format!("/v1/agent/check/pass/{check_id}");
    loop {
        tokio::time::sleep(ttl / 3).await;
        match http.call(Method::PUT, &path, None, timeout).await {
            Ok(reply) if reply.status == 200 => {}
            Ok(reply) if reply.status == 404 => {
                tracing::warn!(%check_id, "the agent lost the broker's check: registering again");
                let register = http
                    .call_ok(
                        Method::PUT,
                        "/v1/agent/service/register",
                        Some(registration.clone()),
                        timeout,
                    )
                    .await;
                if let Err(error) = register {
                    tracing::warn!(%check_id, %error, "registering the broker again failed");
                }
            }
            Ok(reply) => tracing::warn!(
                %check_id,
                status = reply.status,
                body = %reply.body_text(),
                "passing the broker's TTL check failed"
            ),
            Err(error) => {
                tracing::warn!(%check_id, %error, "passing the broker's TTL check failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass never takes longer than the TTL/3 between the background passes, whatever the
    /// request timeout (the default 5 s exceeds a 6 s TTL's 2 s period).
    #[test]
    fn a_pass_times_out_before_the_next_one_is_due() {
        for ttl_ms in [1_000, 6_000, 10_000, 60_000] {
            let ttl = Duration::from_millis(ttl_ms);
            let timeout = pass_timeout(ttl, Duration::from_secs(5));
            assert!(timeout < ttl / 3, "ttl {ttl:?}: {timeout:?}");
        }
        assert_eq!(
            pass_timeout(Duration::from_secs(60), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
