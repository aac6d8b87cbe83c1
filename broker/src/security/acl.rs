//! Kafka's ACL model and its authorizer decision (`StandardAuthorizer` /
//! `StandardAuthorizerData` of Kafka 4), without I/O: the bindings, the filters of
//! DescribeAcls/DeleteAcls, an index of the bindings and `authorize`.
//!
//! Rules, as Kafka's:
//! - super users are allowed everything;
//! - the ACLs that apply to a resource are its LITERAL ones, the LITERAL `*` ones of its type
//!   and the PREFIXED ones whose name starts its name; of those, the ones of the principal or
//!   `User:*`, of the client's host or `*`, and of the operation (ALL matches every one; an
//!   ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE, an ALLOW of ALTER_CONFIGS
//!   also DESCRIBE_CONFIGS);
//! - a matching DENY wins over any ALLOW; a matching ALLOW allows;
//! - a resource with no ACL at all is allowed only with `allow.everyone.if.no.acl.found`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::Principal;

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// A LITERAL resource name matching every resource of its type, and the host and principal
/// name matching every one.
pub const WILDCARD: &str = "*";

/// `User:*`, the principal of ACLs for everyone.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Defines a Kafka enum of the ACL model: its wire code and Kafka's name for each value.
macro_rules! kafka_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            /// The value of a wire code; `None` for a code Kafka does not define (Kafka reads
            /// those as UNKNOWN).
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `DESCRIBE_CONFIGS`).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum!(
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

kafka_enum!(
    /// Kafka's `PatternType`: LITERAL and PREFIXED in bindings; ANY and MATCH only in filters.
    PatternType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

kafka_enum!(
    /// Kafka's `AclOperation`.
    AclOperation {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
        TwoPhaseCommit = 15, "TWO_PHASE_COMMIT";
    }
);

kafka_enum!(
    /// Kafka's `AclPermissionType`.
    AclPermissionType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

impl ResourceType {
    /// The operations a resource of this type has (Kafka's `AclEntry.supportedOperations`):
    /// what authorized-operations bit fields are made of.
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            // Kafka 4 (KIP-848 group configs): the configs operations too.
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }
}

/// A resource pattern of a binding: a LITERAL or PREFIXED name of a concrete type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

/// Who, from where, may or may not do what.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessControlEntry {
    /// `TYPE:NAME`, or `User:*`.
    pub principal: String,
    /// An IP address as the broker prints it, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

/// One ACL (Kafka's `AclBinding`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AccessControlEntry,
}

/// Why CreateAcls refuses a binding (Kafka's `AclControlManager.validateNewAcl`; every one is
/// INVALID_REQUEST).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("Invalid resourceType {0}")]
    ResourceType(String),
    #[error("Invalid patternType {0}")]
    PatternType(String),
    #[error("Invalid operation {0}")]
    Operation(String),
    #[error("Invalid permissionType {0}")]
    Permission(String),
    #[error("Resource name should not be empty")]
    EmptyName,
    #[error(
        "Could not parse principal from `{0}` (no colon is present separating the principal type from the principal name)"
    )]
    Principal(String),
    #[error("Invalid host {0}")]
    Host(String),
}

fn code_name<T: Copy>(code: i8, parse: fn(i8) -> Option<T>, name: fn(T) -> &'static str) -> String {
    parse(code).map_or_else(
        || format!("UNKNOWN({code})"),
        |value| name(value).to_string(),
    )
}

impl AclBinding {
    /// A binding from CreateAcls' fields, validated as Kafka's controller does.
    pub fn from_wire(
        resource_type: i8,
        name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        let resource_type = match ResourceType::from_code(resource_type) {
            Some(ResourceType::Unknown | ResourceType::Any) | None => {
                return Err(AclError::ResourceType(code_name(
                    resource_type,
                    ResourceType::from_code,
                    ResourceType::name,
                )));
            }
            Some(value) => value,
        };
        let pattern_type = match PatternType::from_code(pattern_type) {
            Some(value @ (PatternType::Literal | PatternType::Prefixed)) => value,
            _ => {
                return Err(AclError::PatternType(code_name(
                    pattern_type,
                    PatternType::from_code,
                    PatternType::name,
                )));
            }
        };
        let operation = match AclOperation::from_code(operation) {
            Some(AclOperation::Unknown | AclOperation::Any) | None => {
                return Err(AclError::Operation(code_name(
                    operation,
                    AclOperation::from_code,
                    AclOperation::name,
                )));
            }
            Some(value) => value,
        };
        let permission = match AclPermissionType::from_code(permission) {
            Some(value @ (AclPermissionType::Allow | AclPermissionType::Deny)) => value,
            _ => {
                return Err(AclError::Permission(code_name(
                    permission,
                    AclPermissionType::from_code,
                    AclPermissionType::name,
                )));
            }
        };
        if name.is_empty() {
            return Err(AclError::EmptyName);
        }
        Principal::parse(principal).map_err(|_| AclError::Principal(principal.to_string()))?;
        if host.is_empty() {
            return Err(AclError::Host(host.to_string()));
        }
        Ok(AclBinding {
            pattern: ResourcePattern {
                resource_type,
                name: name.to_string(),
                pattern_type,
            },
            entry: AccessControlEntry {
                principal: principal.to_string(),
                host: host.to_string(),
                operation,
                permission,
            },
        })
    }
}

/// What DescribeAcls and DeleteAcls select bindings with (Kafka's `AclBindingFilter`):
/// `None` and the ANY values match everything; pattern MATCH selects the bindings that would
/// apply to the named resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermissionType,
}

impl AclFilter {
    /// A filter from the wire; `None` when a field is UNKNOWN or a code Kafka does not
    /// define (Kafka answers such a filter INVALID_REQUEST).
    pub fn from_wire(
        resource_type: i8,
        name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Option<Self> {
        let filter = AclFilter {
            resource_type: ResourceType::from_code(resource_type)?,
            name: name.map(str::to_string),
            pattern_type: PatternType::from_code(pattern_type)?,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: AclOperation::from_code(operation)?,
            permission: AclPermissionType::from_code(permission)?,
        };
        let unknown = filter.resource_type == ResourceType::Unknown
            || filter.pattern_type == PatternType::Unknown
            || filter.operation == AclOperation::Unknown
            || filter.permission == AclPermissionType::Unknown;
        (!unknown).then_some(filter)
    }

    /// A filter matching every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermissionType::Any,
        }
    }

    /// Kafka's `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(&binding.pattern) && self.matches_entry(&binding.entry)
    }

    fn matches_pattern(&self, pattern: &ResourcePattern) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != pattern.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != pattern.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == pattern.pattern_type {
            return *name == pattern.name;
        }
        // MATCH: the bindings that apply to the resource `name`.
        match pattern.pattern_type {
            PatternType::Literal => *name == pattern.name || pattern.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&pattern.name),
            _ => false,
        }
    }

    fn matches_entry(&self, entry: &AccessControlEntry) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|principal| *principal == entry.principal)
            && self.host.as_ref().is_none_or(|host| *host == entry.host)
            && (self.operation == AclOperation::Any || self.operation == entry.operation)
            && (self.permission == AclPermissionType::Any || self.permission == entry.permission)
    }
}

/// Whether the authorizer runs (`authorizer` in the broker config). Off, every request is
/// allowed, as a Kafka broker without `authorizer.class.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthorizerKind {
    #[default]
    None,
    /// Kafka's `StandardAuthorizer` semantics, ACLs kept in the cluster coordinator.
    Standard,
}

/// The authorizer's settings: Kafka's `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizerConfig {
    pub kind: AuthorizerKind,
    pub super_users: Vec<Principal>,
    pub allow_everyone_if_no_acl_found: bool,
}

/// An authorization outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self == Decision::Allowed
    }
}

/// The ACL entries of one resource pattern type, by resource name.
type ByName = BTreeMap<String, Vec<AccessControlEntry>>;

/// Every binding, indexed for `authorize`: per resource type, LITERAL entries by exact name
/// (a hash lookup each for the name and `*`) and PREFIXED entries in a sorted map, where the
/// prefixes of a name are found by a few backward range steps (as Kafka's
/// `StandardAuthorizerData`), never by a scan of all ACLs.
#[derive(Debug, Clone, Default)]
pub struct AclIndex {
    bindings: Vec<AclBinding>,
    literal: HashMap<ResourceType, HashMap<String, Vec<AccessControlEntry>>>,
    prefixed: HashMap<ResourceType, ByName>,
}

impl AclIndex {
    pub fn new(bindings: Vec<AclBinding>) -> Self {
        let mut index = AclIndex::default();
        for binding in &bindings {
            let entry = binding.entry.clone();
            let pattern = &binding.pattern;
            match pattern.pattern_type {
                PatternType::Literal => index
                    .literal
                    .entry(pattern.resource_type)
                    .or_default()
                    .entry(pattern.name.clone())
                    .or_default()
                    .push(entry),
                PatternType::Prefixed => index
                    .prefixed
                    .entry(pattern.resource_type)
                    .or_default()
                    .entry(pattern.name.clone())
                    .or_default()
                    .push(entry),
                // Never stored: CreateAcls refuses them.
                PatternType::Unknown | PatternType::Any | PatternType::Match => {}
            }
        }
        index.bindings = bindings;
        index
    }

    /// Every binding, in the order stored.
    pub fn bindings(&self) -> &[AclBinding] {
        &self.bindings
    }

    /// The entries of every pattern that applies to the resource, with each pattern's
    /// entries together.
    fn applicable<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &str,
        mut visit: impl FnMut(&'a [AccessControlEntry]),
    ) {
        if let Some(literal) = self.literal.get(&resource_type) {
            if let Some(entries) = literal.get(name) {
                visit(entries);
            }
            if name != WILDCARD {
                if let Some(entries) = literal.get(WILDCARD) {
                    visit(entries);
                }
            }
        }
        if let Some(prefixed) = self.prefixed.get(&resource_type) {
            for_each_prefix(prefixed, name, visit);
        }
    }

    /// Kafka's `authorize` for one action.
    pub fn authorize(
        &self,
        config: &AuthorizerConfig,
        principal: &Principal,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        if config.super_users.contains(principal) {
            return Decision::Allowed;
        }
        let principal_text = principal.to_string();
        let mut found_acls = false;
        let mut allowed = false;
        let mut denied = false;
        self.applicable(resource_type, name, |entries| {
            found_acls |= !entries.is_empty();
            for entry in entries {
                match entry_decision(entry, &principal_text, host, operation) {
                    Some(Decision::Denied) => denied = true,
                    Some(Decision::Allowed) => allowed = true,
                    None => {}
                }
            }
        });
        // A DENY wins; then an ALLOW; a resource without any ACL is open only with
        // allow.everyone.if.no.acl.found.
        let open = !found_acls && config.allow_everyone_if_no_acl_found;
        if !denied && (allowed || open) {
            Decision::Allowed
        } else {
            Decision::Denied
        }
    }

    /// Kafka's `authorizeByResourceType`: whether the principal may do `operation` on at
    /// least one resource of the type (an idempotent producer's WRITE on any topic): an
    /// ALLOW on some literal or prefixed name that no DENY covers (a DENY of the LITERAL `*`
    /// covers all).
    pub fn authorize_any(
        &self,
        config: &AuthorizerConfig,
        principal: &Principal,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> Decision {
        // As Kafka: a name no ACL is likely on first, so super users and
        // allow.everyone.if.no.acl.found are honoured.
        if self
            .authorize(
                config,
                principal,
                host,
                operation,
                resource_type,
                "hardcode",
            )
            .allowed()
        {
            return Decision::Allowed;
        }
        let principal_text = principal.to_string();
        let relevant = |entry: &AccessControlEntry, permission: AclPermissionType| {
            entry.permission == permission
                && (entry.principal == principal_text || entry.principal == WILDCARD_PRINCIPAL)
                && (entry.host == WILDCARD || entry.host == host)
                && (entry.operation == operation || entry.operation == AclOperation::All)
        };
        let names_with =
            |names: &mut dyn Iterator<Item = (&'_ String, &'_ Vec<AccessControlEntry>)>,
             permission: AclPermissionType| {
                names
                    .filter(|(_, entries)| entries.iter().any(|entry| relevant(entry, permission)))
                    .map(|(name, _)| name.clone())
                    .collect::<Vec<String>>()
            };
        let literal = self.literal.get(&resource_type);
        let prefixed = self.prefixed.get(&resource_type);
        let literal_names = || literal.into_iter().flatten();
        let prefixed_names = || prefixed.into_iter().flatten();
        let denied_literal = names_with(&mut literal_names(), AclPermissionType::Deny);
        let denied_prefixes = names_with(&mut prefixed_names(), AclPermissionType::Deny);
        if denied_literal.iter().any(|name| name == WILDCARD) {
            return Decision::Denied;
        }
        let prefix_denied = |name: &str| {
            denied_prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix))
        };
        let literal_ok = names_with(&mut literal_names(), AclPermissionType::Allow)
            .iter()
            .any(|name| {
                name == WILDCARD || (!denied_literal.contains(name) && !prefix_denied(name))
            });
        let prefix_ok = names_with(&mut prefixed_names(), AclPermissionType::Allow)
            .iter()
            .any(|name| !prefix_denied(name));
        if literal_ok || prefix_ok {
            Decision::Allowed
        } else {
            Decision::Denied
        }
    }
}

/// Kafka's `StandardAuthorizerData.findResult`: what one entry says about the action, or
/// `None` when it does not apply.
fn entry_decision(
    entry: &AccessControlEntry,
    principal: &str,
    host: &str,
    operation: AclOperation,
) -> Option<Decision> {
    if entry.principal != principal && entry.principal != WILDCARD_PRINCIPAL {
        return None;
    }
    if entry.host != WILDCARD && entry.host != host {
        return None;
    }
    if entry.operation != AclOperation::All {
        let applies = if entry.permission == AclPermissionType::Allow {
            match operation {
                // An ALLOW of any of these also allows DESCRIBE (not a DENY: a DENY of READ
                // does not deny DESCRIBE).
                AclOperation::Describe => matches!(
                    entry.operation,
                    AclOperation::Describe
                        | AclOperation::Read
                        | AclOperation::Write
                        | AclOperation::Delete
                        | AclOperation::Alter
                ),
                AclOperation::DescribeConfigs => matches!(
                    entry.operation,
                    AclOperation::DescribeConfigs | AclOperation::AlterConfigs
                ),
                other => entry.operation == other,
            }
        } else {
            entry.operation == operation
        };
        if !applies {
            return None;
        }
    }
    match entry.permission {
        AclPermissionType::Allow => Some(Decision::Allowed),
        AclPermissionType::Deny => Some(Decision::Denied),
        AclPermissionType::Unknown | AclPermissionType::Any => None,
    }
}

/// Visits the entries of every key of `prefixed` that is a prefix of `name` (itself
/// included), in a few range steps: from the greatest key at or below the candidate, a key
/// that is a prefix is visited and the search goes on below it; a key that is not jumps
/// straight to the longest prefix it shares with `name` (no prefix of `name` lies between).
fn for_each_prefix<'a>(
    prefixed: &'a ByName,
    name: &str,
    mut visit: impl FnMut(&'a [AccessControlEntry]),
) {
    let mut candidate_len = name.len();
    loop {
        let candidate = &name[..candidate_len];
        let Some((key, entries)) = prefixed
            .range::<str, _>((Bound::Unbounded, Bound::Included(candidate)))
            .next_back()
        else {
            return;
        };
        let next_len = if name.starts_with(key.as_str()) {
            visit(entries);
            // The next candidate: one character shorter than this key.
            match key.char_indices().next_back() {
                Some((last, _)) => last,
                None => return,
            }
        } else {
            common_prefix_len(key, name)
        };
        if next_len == 0 {
            // The empty name is never a key (CreateAcls refuses it).
            return;
        }
        candidate_len = next_len;
    }
}

/// The byte length of the longest common prefix of `a` and `b`, at a character boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((at, _), _)| at)
}

/// The bit field of authorized operations Kafka answers (`Utils.to32BitField` of the
/// allowed operations' codes).
pub fn operations_bit_field(operations: impl IntoIterator<Item = AclOperation>) -> i32 {
    operations
        .into_iter()
        .fold(0_i32, |bits, operation| bits | (1_i32 << operation.code()))
}

/// What the cluster's ACLs are kept as in the coordinator: one JSON document, changed by
/// compare-and-set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclDocument {
    pub acls: Vec<AclBinding>,
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
