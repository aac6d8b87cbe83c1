//! Broker settings: defaults, a TOML file, then command-line flags, in that order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lmq_storage::{FlushPolicy, LogConfig, RetentionPolicy};
use serde::Deserialize;

use crate::security::Principal;
use crate::security::acl::{AuthorizerConfig, AuthorizerKind};

/// Every broker setting with its default. A TOML config file may set any of them (same
/// names); unknown keys are refused so a typo does not silently keep a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Where partition logs and topic metadata live.
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// Address of the admin HTTP listener (`/metrics`, `/health`, `/ready`, `/v1/status`);
    /// `None` turns it off.
    pub admin_listen: Option<SocketAddr>,
    /// A file whose first line is the bearer token `/metrics` and `/v1/status` require
    /// (`/health` and `/ready` stay open for probes); `None`: no token.
    pub admin_token_file: Option<PathBuf>,
    /// `host:port` clients are told to connect to (Metadata); defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// Kafka's `listeners`: `NAME://HOST:PORT` items; when set they replace `listen`
    /// (`listeners.rs`).
    pub listeners: Vec<String>,
    /// Kafka's `advertised.listeners`, by listener name.
    pub advertised_listeners: Vec<String>,
    /// Kafka's `listener.security.protocol.map` (names that are protocols map to themselves).
    pub listener_security_protocol_map: std::collections::BTreeMap<String, String>,
    /// Kafka's `inter.broker.listener.name`: the listener other brokers use (default: the
    /// first).
    pub inter_broker_listener_name: Option<String>,
    /// The certificate of the SSL and SASL_SSL listeners.
    pub tls: crate::security::tls::TlsConfig,
    /// How clients authenticate on SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl: crate::security::SaslConfig,
    pub node_id: i32,
    /// Create a topic when a client asks Metadata for one that does not exist
    /// (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1 (LMQ's default is 3).
    pub default_partitions: i32,
    /// Largest request frame (`socket.request.max.bytes`).
    pub frame_bytes_max: usize,
    /// Concurrent client connections; more wait for a free slot.
    pub connections_max: usize,
    /// Concurrent client connections from one IP address (`max.connections.per.ip`); one
    /// over it is closed at once. Below `connections_max`, so one address cannot take every
    /// slot.
    pub connections_per_ip_max: usize,
    /// A connection with no request in progress and no answer owed is closed after this
    /// long (`connections.max.idle.ms`).
    pub connections_idle_ms_max: u64,
    /// Kafka's `connections.max.reauth.ms`: a SASL client's session lasts this long, then it
    /// must re-authenticate on the connection (KIP-368) or the connection closes at its next
    /// request; 0 (default, as Kafka): sessions last as long as the connection.
    pub connections_max_reauth_ms: u64,
    /// A frame whose first byte arrived must be complete within this long, or the
    /// connection is closed (a client that sends part of a frame and stalls).
    pub frame_receive_ms_max: u64,
    /// Request bytes in flight across all connections (`queued.max.request.bytes`): a frame
    /// takes its whole size once its length prefix is read, until its request has run; at
    /// the limit, connections wait before reading a frame's body. At least
    /// `frame_bytes_max` + 4.
    pub requests_in_flight_bytes_max: usize,
    /// Whether requests are checked against ACLs (Kafka's `authorizer.class.name`):
    /// `"none"` (every request allowed, as Kafka without an authorizer) or `"standard"`
    /// (Kafka's `StandardAuthorizer` semantics, ACLs in the cluster coordinator).
    pub authorizer: AuthorizerKind,
    /// Principals allowed everything (`super.users`), `TYPE:NAME` each.
    pub super_users: Vec<String>,
    /// Whether a resource with no ACL at all is open to everyone
    /// (`allow.everyone.if.no.acl.found`; Kafka's default, false, when the authorizer is on).
    pub allow_everyone_if_no_acl_found: bool,
    /// Topic defaults, Kafka's names and meanings.
    pub log: LogDefaults,
    /// Consumer group coordinator settings.
    pub group: GroupSettings,
    /// Transaction coordinator settings (Kafka's `transaction.*` broker configs).
    pub transactions: TransactionSettings,
    /// The log cleaner (compaction of topics with `cleanup.policy=compact`).
    pub cleaner: CleanerSettings,
    /// Replicated cluster settings (used with `consul`).
    pub cluster: ClusterSettings,
}

/// The replicated cluster: where its coordinator is and Kafka's replication settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// HTTP address of a Consul agent (`http://127.0.0.1:8500`); `None` runs a single node.
    pub consul: Option<String>,
    /// Root of every Consul key of this cluster (one Consul can hold several clusters).
    pub consul_key_prefix: String,
    /// Consul ACL token, sent as `X-Consul-Token` on every request; never logged.
    /// `CONSUL_HTTP_TOKEN` and `--consul-token` override it.
    pub consul_token: Option<Secret>,
    /// A file whose content is the token (kept out of the config and the process list);
    /// `CONSUL_HTTP_TOKEN_FILE` and `--consul-token-file` override it.
    pub consul_token_file: Option<PathBuf>,
    /// PEM CA file for an `https://` agent (`CONSUL_CACERT`, `--consul-ca-file`).
    pub consul_ca_file: Option<PathBuf>,
    /// PEM client certificate for an agent with `verify_incoming` (`CONSUL_CLIENT_CERT`,
    /// `--consul-cert-file`); needs `consul_key_file`.
    pub consul_cert_file: Option<PathBuf>,
    /// PEM key of `consul_cert_file` (`CONSUL_CLIENT_KEY`, `--consul-key-file`).
    pub consul_key_file: Option<PathBuf>,
    /// Rack of this broker (`broker.rack`): replicas of a partition go to different racks.
    pub rack: Option<String>,
    /// A broker that stops renewing its registration for this long counts as gone; its
    /// leadership lease is half of it (`cluster::ClusterNode::may_lead`).
    pub broker_ttl_ms: u64,
    /// `replica.lag.time.max.ms`: a follower this far behind leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas` of topics that do not set it.
    pub min_insync_replicas: usize,
    /// `default.replication.factor`; -1 means min(3, live brokers).
    pub default_replication_factor: i16,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            consul: None,
            consul_key_prefix: "lmq".to_string(),
            consul_token: None,
            consul_token_file: None,
            consul_ca_file: None,
            consul_cert_file: None,
            consul_key_file: None,
            rack: None,
            broker_ttl_ms: 6_000,
            replica_lag_time_max_ms: 10_000,
            min_insync_replicas: 1,
            default_replication_factor: -1,
        }
    }
}

/// A secret setting: `Debug` (and so every log of a config) shows only that it is set.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach a secured Consul, from one source (the flags, or the environment), laid
/// over the config file's settings with `ClusterSettings::override_consul_access`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsulAccess {
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ConsulAccess {
    /// The variables Consul's own CLI reads; empty ones count as unset, as there.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        ConsulAccess {
            token: var("CONSUL_HTTP_TOKEN").map(Secret),
            token_file: var("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from),
            ca_file: var("CONSUL_CACERT").map(PathBuf::from),
            cert_file: var("CONSUL_CLIENT_CERT").map(PathBuf::from),
            key_file: var("CONSUL_CLIENT_KEY").map(PathBuf::from),
        }
    }
}

impl ClusterSettings {
    /// `source` wins over what is set so far for each setting it has. A token or token file
    /// replaces both of the weaker source's (one token is meant, whichever way it came).
    pub fn override_consul_access(&mut self, source: ConsulAccess) {
        if source.token.is_some() || source.token_file.is_some() {
            self.consul_token = source.token;
            self.consul_token_file = source.token_file;
        }
        let files = [
            (source.ca_file, &mut self.consul_ca_file),
            (source.cert_file, &mut self.consul_cert_file),
            (source.key_file, &mut self.consul_key_file),
        ];
        for (file, setting) in files {
            if file.is_some() {
                *setting = file;
            }
        }
    }

    fn has_consul_access(&self) -> bool {
        self.consul_token.is_some()
            || self.consul_token_file.is_some()
            || self.consul_ca_file.is_some()
            || self.consul_cert_file.is_some()
            || self.consul_key_file.is_some()
    }
}

/// Kafka's `group.*` and `offsets.topic.*` broker settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// A new group waits this long for more members before its first assignment.
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
    pub groups_max: usize,
    /// Bytes of subscription metadata one member may send with its JoinGroup.
    pub member_metadata_bytes_max: usize,
    /// Bytes of one group's metadata record in `__consumer_offsets` (every member's
    /// subscription and assignment): a leader's SyncGroup over it gets UNKNOWN_SERVER_ERROR,
    /// as in Kafka, whose bound is the offsets topic's `max.message.bytes`.
    pub group_metadata_bytes_max: usize,
    /// Partitions of `__consumer_offsets` (`offsets.topic.num.partitions`), fixed when it
    /// is first created: an existing topic keeps its count (a group's partition is the hash
    /// of its id modulo that count).
    pub offsets_topic_partitions: i32,
    /// `segment.bytes` of `__consumer_offsets` (`offsets.topic.segment.bytes`), set when it
    /// is created.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.minutes`: the committed offsets of a group are deleted this long
    /// after it became Empty (a group without a protocol: after each offset's commit).
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// Replicas of `__consumer_offsets` in a Consul cluster; until that many brokers are
    /// alive, FindCoordinator answers COORDINATOR_NOT_AVAILABLE (as Kafka does). An embedded
    /// node, the only broker there can be, uses 1.
    pub offsets_topic_replication_factor: i16,
}

impl Default for GroupSettings {
    fn default() -> Self {
        let defaults = crate::group::state::GroupConfig::default();
        GroupSettings {
            min_session_timeout_ms: defaults.session_timeout_ms_min,
            max_session_timeout_ms: defaults.session_timeout_ms_max,
            initial_rebalance_delay_ms: defaults.initial_rebalance_delay_ms,
            max_size: defaults.members_max,
            groups_max: defaults.groups_max,
            member_metadata_bytes_max: defaults.member_metadata_bytes_max,
            group_metadata_bytes_max: defaults.group_metadata_bytes_max,
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_replication_factor: 3,
        }
    }
}

impl GroupSettings {
    pub fn coordinator_config(&self) -> crate::group::state::GroupConfig {
        crate::group::state::GroupConfig {
            session_timeout_ms_min: self.min_session_timeout_ms,
            session_timeout_ms_max: self.max_session_timeout_ms,
            initial_rebalance_delay_ms: self.initial_rebalance_delay_ms,
            members_max: self.max_size,
            groups_max: self.groups_max,
            member_metadata_bytes_max: self.member_metadata_bytes_max,
            group_metadata_bytes_max: self.group_metadata_bytes_max,
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
        }
    }
}

/// The transaction coordinator and its `__transaction_state` topic, Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionSettings {
    /// Partitions of `__transaction_state` (`transaction.state.log.num.partitions`), fixed
    /// when it is first created: a transactional id's partition is the hash of the id modulo
    /// that count.
    pub state_log_num_partitions: i32,
    /// Its replicas in a Consul cluster (`transaction.state.log.replication.factor`); until
    /// that many brokers are alive FindCoordinator answers COORDINATOR_NOT_AVAILABLE. An
    /// embedded node uses 1.
    pub state_log_replication_factor: i16,
    /// Its `min.insync.replicas` (`transaction.state.log.min.isr`), at most its replicas.
    pub state_log_min_isr: i32,
    /// Its `segment.bytes` (`transaction.state.log.segment.bytes`), at creation.
    pub state_log_segment_bytes: u64,
    /// The longest `transaction.timeout.ms` a producer may ask for
    /// (`transaction.max.timeout.ms`; more is refused with INVALID_TRANSACTION_TIMEOUT).
    pub max_timeout_ms: i64,
    /// A transactional id with no transaction for this long is forgotten
    /// (`transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: i64,
    /// How often transactions past their timeout are looked for and aborted
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// How often expired transactional ids are looked for
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
    pub remove_expired_transaction_cleanup_interval_ms: u64,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        TransactionSettings {
            state_log_num_partitions: 50,
            state_log_replication_factor: 3,
            state_log_min_isr: 2,
            state_log_segment_bytes: 100 * 1024 * 1024,
            max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            remove_expired_transaction_cleanup_interval_ms: 3_600_000,
        }
    }
}

impl TransactionSettings {
    fn validate(&self) -> Result<(), String> {
        if self.state_log_num_partitions < 1
            || self.state_log_replication_factor < 1
            || self.state_log_min_isr < 1
        {
            return Err(
                "[transactions] state_log_num_partitions, state_log_replication_factor \
                        and state_log_min_isr must be at least 1"
                    .to_string(),
            );
        }
        if self.max_timeout_ms < 1 || self.transactional_id_expiration_ms < 1 {
            return Err(
                "[transactions] max_timeout_ms and transactional_id_expiration_ms \
                        must be at least 1"
                    .to_string(),
            );
        }
        if self.abort_timed_out_transaction_cleanup_interval_ms == 0
            || self.remove_expired_transaction_cleanup_interval_ms == 0
        {
            return Err("[transactions] the cleanup intervals must be at least 1".to_string());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    pub segment_bytes: u64,
    pub segment_ms: u64,
    /// -1 keeps data forever by time.
    pub retention_ms: i64,
    /// -1 keeps data forever by size.
    pub retention_bytes: i64,
    pub max_message_bytes: u64,
    pub index_interval_bytes: u64,
    /// `os` (default, Kafka's), `every-batch`, or a number of milliseconds.
    pub flush: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./lmq-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            admin_token_file: None,
            advertised_listener: None,
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: std::collections::BTreeMap::new(),
            inter_broker_listener_name: None,
            tls: crate::security::tls::TlsConfig::default(),
            sasl: crate::security::SaslConfig::default(),
            node_id: 0,
            auto_create_topics: true,
            default_partitions: 3,
            frame_bytes_max: lmq_wire::FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            connections_per_ip_max: 1_000,
            connections_max_reauth_ms: 0,
            connections_idle_ms_max: 600_000,
            frame_receive_ms_max: 30_000,
            requests_in_flight_bytes_max: 512 * 1024 * 1024,
            authorizer: AuthorizerKind::None,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            log: LogDefaults::default(),
            group: GroupSettings::default(),
            transactions: TransactionSettings::default(),
            cleaner: CleanerSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// Kafka's `log.cleaner.*` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanerSettings {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.threads`: OS threads cleaning logs, one log each at a time.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: the offset maps of all threads together.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.max.bytes.per.second` per thread; `None`: unlimited (Kafka's default).
    pub io_bytes_per_second_max: Option<u64>,
    /// `log.cleaner.backoff.ms`: how long a thread waits when no log needs cleaning.
    pub backoff_ms: u64,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        CleanerSettings {
            enable: true,
            threads: 1,
            dedupe_buffer_bytes: 128 * 1024 * 1024,
            io_bytes_per_second_max: None,
            backoff_ms: 15_000,
        }
    }
}

impl Default for LogDefaults {
    fn default() -> Self {
        let storage = LogConfig::default();
        LogDefaults {
            segment_bytes: storage.segment_bytes_max,
            segment_ms: storage.segment_ms,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: storage.batch_bytes_max,
            index_interval_bytes: storage.index_interval_bytes,
            flush: "os".to_string(),
        }
    }
}

impl LogDefaults {
    pub fn flush_policy(&self) -> Result<FlushPolicy, String> {
        match self.flush.as_str() {
            "os" => Ok(FlushPolicy::Os),
            "every-batch" => Ok(FlushPolicy::EveryBatch),
            other => other.parse().map(FlushPolicy::IntervalMs).map_err(|_| {
                format!(
                    "log.flush {other:?} is not 'os', 'every-batch' or a number of milliseconds"
                )
            }),
        }
    }

    /// The storage config topics start from before their own overrides.
    pub fn log_config(&self) -> Result<LogConfig, String> {
        let config = LogConfig {
            segment_bytes_max: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            batch_bytes_max: self.max_message_bytes,
            flush_policy: self.flush_policy()?,
            retention: RetentionPolicy {
                retention_ms: u64::try_from(self.retention_ms).ok(),
                retention_bytes: u64::try_from(self.retention_bytes).ok(),
            },
            ..LogConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

impl BrokerConfig {
    /// `__consumer_offsets`' replication factor: the configured one with Consul, 1 for the
    /// embedded node (it is the only broker its coordinator admits).
    pub fn offsets_topic_replication_factor(&self) -> i16 {
        match self.cluster.consul {
            Some(_) => self.group.offsets_topic_replication_factor,
            None => 1,
        }
    }

    /// `__transaction_state`'s replication factor and min ISR: the configured ones with
    /// Consul (the min ISR at most the replicas, as a topic's), 1 and 1 for the embedded node.
    pub fn transaction_state_replication(&self) -> (i16, i32) {
        match self.cluster.consul {
            Some(_) => {
                let replicas = self.transactions.state_log_replication_factor;
                let min_isr = self.transactions.state_log_min_isr.min(i32::from(replicas));
                (replicas, min_isr)
            }
            None => (1, 1),
        }
    }

    pub fn from_toml_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read config file {}: {error}", path.display()))?;
        toml::from_str(&text).map_err(|error| format!("config file {}: {error}", path.display()))
    }

    /// The Kafka listeners (`listeners.rs`), checked.
    pub fn listeners(&self) -> Result<Vec<crate::listeners::Listener>, String> {
        crate::listeners::resolve(&crate::listeners::Settings {
            listen: self.listen,
            advertised: self.advertised(),
            listeners: &self.listeners,
            advertised_listeners: &self.advertised_listeners,
            protocol_map: &self.listener_security_protocol_map,
            inter_broker_listener_name: self.inter_broker_listener_name.as_deref(),
        })
    }

    /// Of `listeners`, the one other brokers replicate over.
    pub fn inter_broker_listener<'a>(
        &self,
        listeners: &'a [crate::listeners::Listener],
    ) -> Option<&'a crate::listeners::Listener> {
        crate::listeners::inter_broker(self.inter_broker_listener_name.as_deref(), listeners)
    }

    /// Listener `index` bound to `address` (a port 0 the kernel chose becomes the real one,
    /// in what is advertised too).
    pub fn record_bound(&mut self, index: usize, address: SocketAddr) {
        if self.listeners.is_empty() {
            self.listen = address;
        } else if let Some(text) = self.listeners.get_mut(index)
            && let Some(bound) = crate::listeners::rebound(text, address)
        {
            *text = bound;
        }
    }

    pub fn advertised(&self) -> (String, i32) {
        let listener = self
            .advertised_listener
            .clone()
            .unwrap_or_else(|| self.listen.to_string());
        match listener.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().unwrap_or(9092)),
            None => (listener, 9092),
        }
    }

    /// The authorizer's settings, the super users parsed.
    pub fn authorizer_config(&self) -> Result<AuthorizerConfig, String> {
        let super_users = self
            .super_users
            .iter()
            .map(|text| Principal::parse(text).map_err(|error| format!("super_users: {error}")))
            .collect::<Result<_, _>>()?;
        Ok(AuthorizerConfig {
            kind: self.authorizer,
            super_users,
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.log.log_config()?;
        self.authorizer_config()?;
        self.transactions.validate()?;
        if self.default_partitions < 1 {
            return Err("default_partitions must be at least 1".to_string());
        }
        if self.cluster.broker_ttl_ms < 1_000 {
            return Err("cluster.broker_ttl_ms must be at least 1000".to_string());
        }
        if self.cluster.replica_lag_time_max_ms < 1 || self.cluster.min_insync_replicas < 1 {
            return Err(
                "cluster.replica_lag_time_max_ms and cluster.min_insync_replicas must be at least 1"
                    .to_string(),
            );
        }
        if self.cluster.consul.is_none() && self.cluster.has_consul_access() {
            return Err(
                "a Consul token or TLS file is set without a Consul address (--consul)".to_string(),
            );
        }
        if self.cluster.consul_token.is_some() && self.cluster.consul_token_file.is_some() {
            return Err(
                "set the Consul token or a token file, not both (cluster.consul_token, \
                 cluster.consul_token_file)"
                    .to_string(),
            );
        }
        if self.cluster.consul.is_some() && self.node_id < 0 {
            return Err("a cluster broker needs --node-id 0 or more".to_string());
        }
        if self.connections_max < 2 {
            return Err("connections_max must be at least 2".to_string());
        }
        if self.connections_per_ip_max == 0 || self.connections_per_ip_max >= self.connections_max {
            return Err(format!(
                "connections_per_ip_max ({}) must be at least 1 and below connections_max ({}), \
                 so one address cannot take every slot",
                self.connections_per_ip_max, self.connections_max
            ));
        }
        if self.connections_idle_ms_max == 0 || self.frame_receive_ms_max == 0 {
            return Err(
                "connections_idle_ms_max and frame_receive_ms_max must be at least 1".to_string(),
            );
        }
        // Each frame takes its whole size from the budget: the largest must fit.
        let budget_min = self.frame_bytes_max.saturating_add(4);
        if self.requests_in_flight_bytes_max < budget_min {
            return Err(format!(
                "requests_in_flight_bytes_max ({}) must be at least {budget_min} (a whole \
                 frame_bytes_max frame with its prefix)",
                self.requests_in_flight_bytes_max,
            ));
        }
        if self
            .sasl
            .enabled_mechanisms
            .contains(&crate::security::SaslMechanism::OauthBearer)
            && self.sasl.oauthbearer_jwks_file.is_none()
            && self.sasl.oauthbearer_jwks_url.is_none()
        {
            return Err(
                "[sasl] enabled_mechanisms has OAUTHBEARER: set [sasl] oauthbearer_jwks_file \
                 or oauthbearer_jwks_url (the JSON Web Key Set of the keys that sign the tokens)"
                    .to_string(),
            );
        }
        if self.sasl.oauthbearer_jwks_file.is_some() && self.sasl.oauthbearer_jwks_url.is_some() {
            return Err(
                "[sasl] oauthbearer_jwks_file and oauthbearer_jwks_url are both set: keep one"
                    .to_string(),
            );
        }
        if let Some(url) = &self.sasl.oauthbearer_jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!(
                "[sasl] oauthbearer_jwks_url {url:?} is not an https:// or http:// URL (a local \
                 file goes in oauthbearer_jwks_file)"
            ));
        }
        if self.sasl.oauthbearer_jwks_refresh_ms == 0 {
            return Err("[sasl] oauthbearer_jwks_refresh_ms must be above 0".to_string());
        }
        if self
            .sasl
            .enabled_mechanisms
            .contains(&crate::security::SaslMechanism::Plain)
            && self.sasl.plain_users_file.is_none()
        {
            return Err(
                "[sasl] enabled_mechanisms has PLAIN: set [sasl] plain_users_file (a TOML file \
                 with name = \"password\" lines under [users])"
                    .to_string(),
            );
        }
        let listeners = self.listeners()?;
        if self.cluster.consul.is_some()
            && let Some(listener) = self.inter_broker_listener(&listeners)
            && !matches!(
                listener.protocol,
                crate::listeners::SecurityProtocol::Plaintext
                    | crate::listeners::SecurityProtocol::Ssl
            )
        {
            return Err(format!(
                "the inter-broker listener {} is {}: brokers replicate over PLAINTEXT or SSL \
                 (with SSL each broker's [tls] certificate is its client certificate and \
                 [tls] ca_file the CA it trusts); name such a listener in \
                 inter_broker_listener_name",
                listener.name, listener.protocol
            ));
        }
        if self.cluster.consul.is_some()
            && self
                .inter_broker_listener(&listeners)
                .is_some_and(|listener| listener.protocol.tls())
            && self.tls.ca_file.is_none()
        {
            return Err(
                "an SSL inter-broker listener needs [tls] ca_file: the CA that signed the \
                 other brokers' certificates"
                    .to_string(),
            );
        }
        for listener in listeners {
            if listener.protocol.sasl() && self.sasl.enabled_mechanisms.is_empty() {
                return Err(format!(
                    "listener {} is {}: enable a mechanism in [sasl] enabled_mechanisms \
                     (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)",
                    listener.name, listener.protocol
                ));
            }
            if listener.protocol.tls()
                && (self.tls.cert_file.is_none() || self.tls.key_file.is_none())
            {
                return Err(format!(
                    "listener {} is {}: set [tls] cert_file and key_file (PEM) or --tls-cert-file \
                     and --tls-key-file",
                    listener.name, listener.protocol
                ));
            }
        }
        if let Some(listener) = &self.advertised_listener {
            let port = listener
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok());
            if port.is_none() {
                return Err(format!(
                    "advertised listener {listener:?} must be HOST:PORT"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/CONFIG.md's example is a valid config file, and what it shows are the defaults.
    #[test]
    fn the_documented_config_file_parses_to_the_defaults() {
        let doc = include_str!("../../docs/CONFIG.md");
        let start = doc.find("```toml\n").map(|at| at + "```toml\n".len());
        let block =
            start.and_then(|start| doc[start..].find("```").map(|end| &doc[start..start + end]));
        let Some(block) = block else {
            panic!("docs/CONFIG.md has no toml block");
        };
        let parsed: BrokerConfig = match toml::from_str(block) {
            Ok(parsed) => parsed,
            Err(error) => panic!("docs/CONFIG.md's example does not parse: {error}"),
        };
        assert_eq!(parsed, BrokerConfig::default());
    }

    #[test]
    fn oauthbearer_needs_one_key_set_source_and_a_fetchable_url() {
        let mut config = BrokerConfig::default();
        config
            .sasl
            .enabled_mechanisms
            .push(crate::security::SaslMechanism::OauthBearer);
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("oauthbearer_jwks_url")
        );
        config.sasl.oauthbearer_jwks_url = Some("https://idp.example/jwks.json".into());
        config.validate().unwrap();
        config.sasl.oauthbearer_jwks_file = Some("jwks.json".into());
        assert!(config.validate().unwrap_err().contains("both set"));
        config.sasl.oauthbearer_jwks_file = None;
        config.sasl.oauthbearer_jwks_url = Some("file:///etc/lmq/jwks.json".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("oauthbearer_jwks_file")
        );
        config.sasl.oauthbearer_jwks_url = Some("http://127.0.0.1:8080/jwks.json".into());
        config.sasl.oauthbearer_jwks_refresh_ms = 0;
        assert!(config.validate().unwrap_err().contains("above 0"));
    }

    #[test]
    fn listener_settings_that_cannot_serve_are_refused_with_the_fix() {
        let mut config = BrokerConfig {
            listeners: vec!["SASL_SSL://127.0.0.1:9093".into()],
            ..BrokerConfig::default()
        };
        config.sasl.enabled_mechanisms.clear();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("enabled_mechanisms")
        );
        config.sasl.enabled_mechanisms = vec![crate::security::SaslMechanism::Plain];
        assert!(config.validate().unwrap_err().contains("plain_users_file"));
        config.sasl = crate::security::SaslConfig::default();
        assert!(config.validate().unwrap_err().contains("cert_file"));
        config.listeners = vec!["SSL://127.0.0.1:9093".into()];
        assert!(config.validate().unwrap_err().contains("cert_file"));
        config.tls.cert_file = Some("broker.pem".into());
        config.tls.key_file = Some("broker.key".into());
        config.validate().unwrap();
        // Brokers replicate over the inter-broker listener with the native client.
        config.cluster.consul = Some("http://127.0.0.1:8500".into());
        assert!(config.validate().unwrap_err().contains("ca_file"));
        config.tls.ca_file = Some("ca.pem".into());
        config.validate().unwrap();
        config.listeners = vec!["SASL_SSL://127.0.0.1:9093".into()];
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("inter-broker listener SASL_SSL")
        );
        config.listeners.push("INTERNAL://127.0.0.1:9094".into());
        config
            .listener_security_protocol_map
            .insert("INTERNAL".into(), "PLAINTEXT".into());
        config.inter_broker_listener_name = Some("INTERNAL".into());
        config.validate().unwrap();
    }

    #[test]
    fn a_config_file_overrides_defaults_and_refuses_typos() {
        let config: BrokerConfig = toml::from_str(
            "node_id = 3\nlisten = \"127.0.0.1:19092\"\n[log]\nflush = \"every-batch\"\n",
        )
        .unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.log.flush_policy().unwrap(), FlushPolicy::EveryBatch);
        assert_eq!(config.default_partitions, 3);
        assert!(toml::from_str::<BrokerConfig>("nod_id = 3").is_err());
    }

    #[test]
    fn consul_access_from_the_config_file_and_its_overrides() {
        let mut config: BrokerConfig = toml::from_str(
            "[cluster]\nconsul = \"https://consul:8501\"\nconsul_token = \"from-file\"\n\
             consul_ca_file = \"/etc/lmq/ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            config.cluster.consul_token.as_ref().map(Secret::expose),
            Some("from-file")
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("from-file"), "{printed}");
        // A token file from a stronger source replaces the weaker token, files one by one.
        config.cluster.override_consul_access(ConsulAccess {
            token_file: Some("/run/token".into()),
            cert_file: Some("/etc/lmq/client.pem".into()),
            ..ConsulAccess::default()
        });
        assert_eq!(config.cluster.consul_token, None);
        assert_eq!(
            config.cluster.consul_token_file,
            Some(PathBuf::from("/run/token"))
        );
        assert_eq!(
            config.cluster.consul_ca_file,
            Some(PathBuf::from("/etc/lmq/ca.pem"))
        );
        assert_eq!(
            config.cluster.consul_cert_file,
            Some(PathBuf::from("/etc/lmq/client.pem"))
        );
        assert!(config.validate().is_ok());
        config.cluster.consul_token = Some(Secret::new("both"));
        assert!(config.validate().is_err(), "token and token file at once");
        config.cluster.consul_token_file = None;
        config.cluster.consul = None;
        assert!(config.validate().is_err(), "a token without --consul");
    }

    #[test]
    fn consul_access_from_the_environment_reads_consuls_own_variables() {
        let env = |name: &str| match name {
            "CONSUL_HTTP_TOKEN" => Some("t".to_string()),
            "CONSUL_CACERT" => Some("/ca.pem".to_string()),
            "CONSUL_CLIENT_CERT" => Some("/c.pem".to_string()),
            "CONSUL_CLIENT_KEY" => Some("/k.pem".to_string()),
            "CONSUL_HTTP_TOKEN_FILE" => Some(String::new()),
            _ => None,
        };
        let access = ConsulAccess::from_env(env);
        assert_eq!(access.token, Some(Secret::new("t")));
        assert_eq!(access.token_file, None, "empty counts as unset");
        assert_eq!(access.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(access.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(access.key_file, Some(PathBuf::from("/k.pem")));
    }

    #[test]
    fn connection_limits_leave_room_for_other_addresses_and_whole_frames() {
        assert_eq!(BrokerConfig::default().validate(), Ok(()));
        let per_ip_all = BrokerConfig {
            connections_max: 100,
            connections_per_ip_max: 100,
            ..BrokerConfig::default()
        };
        assert!(
            per_ip_all.validate().is_err(),
            "one address could take every slot"
        );
        let small_budget = BrokerConfig {
            requests_in_flight_bytes_max: BrokerConfig::default().frame_bytes_max,
            ..BrokerConfig::default()
        };
        assert!(
            small_budget.validate().is_err(),
            "a largest frame could never arrive"
        );
        let no_idle = BrokerConfig {
            connections_idle_ms_max: 0,
            ..BrokerConfig::default()
        };
        assert!(no_idle.validate().is_err());
    }

    #[test]
    fn flush_accepts_a_millisecond_interval() {
        let log = LogDefaults {
            flush: "250".to_string(),
            ..LogDefaults::default()
        };
        assert_eq!(log.flush_policy().unwrap(), FlushPolicy::IntervalMs(250));
        let log = LogDefaults {
            flush: "sometimes".to_string(),
            ..LogDefaults::default()
        };
        assert!(log.flush_policy().is_err());
    }
}
