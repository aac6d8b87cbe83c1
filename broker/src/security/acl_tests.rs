#![allow(clippy::unwrap_used)]

use super::*;

const HOST: &str = "10.0.0.1";

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    host: &str,
    operation: AclOperation,
    permission: AclPermissionType,
) -> AclBinding {
    AclBinding {
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
    }
}

fn allow_topic(name: &str, pattern: PatternType, principal: &str, op: AclOperation) -> AclBinding {
    acl(
        ResourceType::Topic,
        name,
        pattern,
        principal,
        WILDCARD,
        op,
        AclPermissionType::Allow,
    )
}

fn deny_topic(name: &str, pattern: PatternType, principal: &str, op: AclOperation) -> AclBinding {
    acl(
        ResourceType::Topic,
        name,
        pattern,
        principal,
        WILDCARD,
        op,
        AclPermissionType::Deny,
    )
}

fn standard() -> AuthorizerConfig {
    AuthorizerConfig {
        kind: AuthorizerKind::Standard,
        ..AuthorizerConfig::default()
    }
}

fn alice() -> Principal {
    Principal::user("alice")
}

fn topic(index: &AclIndex, config: &AuthorizerConfig, op: AclOperation, name: &str) -> bool {
    index
        .authorize(config, &alice(), HOST, op, ResourceType::Topic, name)
        .allowed()
}

#[test]
fn without_acls_everything_is_denied_unless_everyone_is_allowed() {
    let index = AclIndex::default();
    assert!(!topic(&index, &standard(), AclOperation::Read, "orders"));
    let everyone = AuthorizerConfig {
        allow_everyone_if_no_acl_found: true,
        ..standard()
    };
    assert!(topic(&index, &everyone, AclOperation::Read, "orders"));
}

#[test]
fn allow_everyone_applies_only_to_resources_with_no_acl_at_all() {
    // An ACL of bob on the topic: alice has none that match, yet the topic has ACLs.
    let index = AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:bob",
        AclOperation::Read,
    )]);
    let everyone = AuthorizerConfig {
        allow_everyone_if_no_acl_found: true,
        ..standard()
    };
    assert!(!topic(&index, &everyone, AclOperation::Read, "orders"));
    assert!(topic(&index, &everyone, AclOperation::Read, "payments"));
}

#[test]
fn deny_wins_over_allow() {
    let index = AclIndex::new(vec![
        allow_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::All,
        ),
        deny_topic("ord", PatternType::Prefixed, "User:*", AclOperation::Write),
    ]);
    assert!(topic(&index, &standard(), AclOperation::Read, "orders"));
    assert!(!topic(&index, &standard(), AclOperation::Write, "orders"));
}

#[test]
fn all_matches_every_operation_for_allow_and_deny() {
    let index = AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::All,
    )]);
    for op in [
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Delete,
        AclOperation::AlterConfigs,
    ] {
        assert!(topic(&index, &standard(), op, "orders"), "{op}");
    }
    let index = AclIndex::new(vec![
        allow_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        ),
        deny_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::All,
        ),
    ]);
    assert!(!topic(&index, &standard(), AclOperation::Read, "orders"));
}

#[test]
fn read_write_delete_alter_imply_describe_and_alter_configs_implies_describe_configs() {
    for op in [
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Delete,
        AclOperation::Alter,
    ] {
        let index = AclIndex::new(vec![allow_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            op,
        )]);
        assert!(
            topic(&index, &standard(), AclOperation::Describe, "orders"),
            "{op}"
        );
        assert!(
            !topic(&index, &standard(), AclOperation::DescribeConfigs, "orders"),
            "{op}"
        );
    }
    let index = AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::AlterConfigs,
    )]);
    assert!(topic(
        &index,
        &standard(),
        AclOperation::DescribeConfigs,
        "orders"
    ));
    assert!(!topic(
        &index,
        &standard(),
        AclOperation::Describe,
        "orders"
    ));
    // DESCRIBE does not imply READ.
    let index = AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::Describe,
    )]);
    assert!(!topic(&index, &standard(), AclOperation::Read, "orders"));
}

#[test]
fn a_deny_of_read_does_not_deny_describe() {
    let index = AclIndex::new(vec![
        allow_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Describe,
        ),
        deny_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        ),
    ]);
    assert!(topic(&index, &standard(), AclOperation::Describe, "orders"));
    assert!(!topic(&index, &standard(), AclOperation::Read, "orders"));
}

#[test]
fn prefixed_acls_apply_to_names_they_start() {
    let index = AclIndex::new(vec![
        allow_topic(
            "team-a.",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Read,
        ),
        allow_topic(
            "team-b.x",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Write,
        ),
    ]);
    assert!(topic(
        &index,
        &standard(),
        AclOperation::Read,
        "team-a.orders"
    ));
    assert!(topic(&index, &standard(), AclOperation::Read, "team-a."));
    assert!(!topic(&index, &standard(), AclOperation::Read, "team-a"));
    assert!(!topic(
        &index,
        &standard(),
        AclOperation::Read,
        "team-b.orders"
    ));
    assert!(topic(
        &index,
        &standard(),
        AclOperation::Write,
        "team-b.xyz"
    ));
    assert!(!topic(
        &index,
        &standard(),
        AclOperation::Write,
        "team-b.orders"
    ));
}

#[test]
fn wildcard_resource_principal_and_host() {
    let index = AclIndex::new(vec![acl(
        ResourceType::Topic,
        WILDCARD,
        PatternType::Literal,
        WILDCARD_PRINCIPAL,
        HOST,
        AclOperation::Read,
        AclPermissionType::Allow,
    )]);
    let config = standard();
    assert!(topic(&index, &config, AclOperation::Read, "anything"));
    let from_elsewhere = index.authorize(
        &config,
        &alice(),
        "10.0.0.2",
        AclOperation::Read,
        ResourceType::Topic,
        "anything",
    );
    assert_eq!(from_elsewhere, Decision::Denied);
    // Groups are another resource type.
    let group = index.authorize(
        &config,
        &alice(),
        HOST,
        AclOperation::Read,
        ResourceType::Group,
        "anything",
    );
    assert_eq!(group, Decision::Denied);
    // A literal "*" as a prefixed pattern is just the character.
    let index = AclIndex::new(vec![allow_topic(
        WILDCARD,
        PatternType::Prefixed,
        "User:alice",
        AclOperation::Read,
    )]);
    assert!(!topic(&index, &config, AclOperation::Read, "orders"));
    assert!(topic(&index, &config, AclOperation::Read, "*orders"));
}

#[test]
fn a_principal_matches_only_itself_or_the_user_wildcard() {
    let index = AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:bob",
        AclOperation::Read,
    )]);
    assert!(!topic(&index, &standard(), AclOperation::Read, "orders"));
    // `Group:*` is not Kafka's wildcard principal.
    let index = AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "Group:*",
        AclOperation::Read,
    )]);
    assert!(!topic(&index, &standard(), AclOperation::Read, "orders"));
}

#[test]
fn super_users_bypass_every_acl() {
    let index = AclIndex::new(vec![deny_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::All,
    )]);
    let config = AuthorizerConfig {
        super_users: vec![alice()],
        ..standard()
    };
    assert!(topic(&index, &config, AclOperation::Read, "orders"));
    assert!(
        index
            .authorize_any(
                &config,
                &alice(),
                HOST,
                AclOperation::Write,
                ResourceType::Topic
            )
            .allowed()
    );
}

#[test]
fn authorize_any_finds_an_allow_no_deny_covers() {
    let config = standard();
    let any = |index: &AclIndex| {
        index
            .authorize_any(
                &config,
                &alice(),
                HOST,
                AclOperation::Write,
                ResourceType::Topic,
            )
            .allowed()
    };
    assert!(!any(&AclIndex::default()));
    assert!(any(&AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::Write,
    )])));
    // Covered by a deny prefix.
    assert!(!any(&AclIndex::new(vec![
        allow_topic(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Write
        ),
        deny_topic(
            "ord",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Write
        ),
    ])));
    // A deny of the wildcard covers everything.
    assert!(!any(&AclIndex::new(vec![
        allow_topic(
            "a",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Write
        ),
        deny_topic(WILDCARD, PatternType::Literal, "User:*", AclOperation::All),
    ])));
    // One allowed prefix outside the denied ones suffices.
    assert!(any(&AclIndex::new(vec![
        allow_topic(
            "a",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Write
        ),
        deny_topic(
            "b",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Write
        ),
    ])));
    // Read does not give write.
    assert!(!any(&AclIndex::new(vec![allow_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::Read,
    )])));
}

/// The prefix walk against the obvious scan, over names that share many prefixes.
#[test]
fn the_prefix_walk_finds_exactly_the_prefixes_a_scan_finds() {
    let keys = [
        "a", "ab", "abb", "abc", "abcd", "abd", "ac", "b", "ba", "é", "éa", "aé", "a-", "zz",
    ];
    let mut map = ByName::new();
    for key in keys {
        map.insert(
            key.to_string(),
            vec![AccessControlEntry {
                principal: format!("User:{key}"),
                host: WILDCARD.to_string(),
                operation: AclOperation::Read,
                permission: AclPermissionType::Allow,
            }],
        );
    }
    let names = [
        "a", "abc", "abcde", "abca", "abz", "ab", "b", "bz", "c", "éab", "aéb", "a-x", "zzz", "aa",
        "z",
    ];
    for name in names {
        let mut found = Vec::new();
        for_each_prefix(&map, name, |entries| {
            found.push(entries[0].principal.trim_start_matches("User:").to_string());
        });
        found.sort();
        let mut expected: Vec<String> = keys
            .iter()
            .filter(|key| name.starts_with(*key))
            .map(|key| key.to_string())
            .collect();
        expected.sort();
        assert_eq!(found, expected, "{name}");
    }
}

#[test]
fn filters_select_as_kafkas() {
    let literal = allow_topic(
        "orders",
        PatternType::Literal,
        "User:alice",
        AclOperation::Read,
    );
    let wildcard = allow_topic(
        WILDCARD,
        PatternType::Literal,
        "User:alice",
        AclOperation::Read,
    );
    let prefixed = deny_topic(
        "ord",
        PatternType::Prefixed,
        "User:bob",
        AclOperation::Write,
    );
    let group = acl(
        ResourceType::Group,
        "orders",
        PatternType::Literal,
        "User:alice",
        WILDCARD,
        AclOperation::Read,
        AclPermissionType::Allow,
    );
    let all = [&literal, &wildcard, &prefixed, &group];
    let selected =
        |filter: &AclFilter| all.iter().filter(|binding| filter.matches(binding)).count();
    assert_eq!(selected(&AclFilter::any()), 4);
    let named = |pattern_type| AclFilter {
        resource_type: ResourceType::Topic,
        name: Some("orders".to_string()),
        pattern_type,
        ..AclFilter::any()
    };
    // ANY: the exact name of any pattern type; LITERAL only literal; MATCH every pattern
    // that applies to the resource.
    assert_eq!(selected(&named(PatternType::Any)), 1);
    assert_eq!(selected(&named(PatternType::Literal)), 1);
    assert_eq!(selected(&named(PatternType::Prefixed)), 0);
    assert_eq!(selected(&named(PatternType::Match)), 3);
    let by_entry = AclFilter {
        principal: Some("User:bob".to_string()),
        permission: AclPermissionType::Deny,
        ..AclFilter::any()
    };
    assert_eq!(selected(&by_entry), 1);
    let by_operation = AclFilter {
        operation: AclOperation::Read,
        host: Some(WILDCARD.to_string()),
        ..AclFilter::any()
    };
    assert_eq!(selected(&by_operation), 3);
}

#[test]
fn filters_with_unknown_fields_are_refused() {
    assert!(AclFilter::from_wire(1, None, 1, None, None, 1, 1).is_some());
    assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_none());
    assert!(AclFilter::from_wire(1, None, 0, None, None, 1, 1).is_none());
    assert!(AclFilter::from_wire(1, None, 1, None, None, 99, 1).is_none());
}

#[test]
fn bindings_are_validated_as_kafkas_controller_does() {
    let ok = AclBinding::from_wire(2, "orders", 3, "User:alice", "*", 3, 3).unwrap();
    assert_eq!(ok.pattern.resource_type, ResourceType::Topic);
    assert_eq!(ok.entry.permission, AclPermissionType::Allow);
    let refused = [
        AclBinding::from_wire(1, "orders", 3, "User:alice", "*", 3, 3),
        AclBinding::from_wire(2, "orders", 2, "User:alice", "*", 3, 3),
        AclBinding::from_wire(2, "orders", 3, "User:alice", "*", 1, 3),
        AclBinding::from_wire(2, "orders", 3, "User:alice", "*", 3, 1),
        AclBinding::from_wire(2, "", 3, "User:alice", "*", 3, 3),
        AclBinding::from_wire(2, "orders", 3, "alice", "*", 3, 3),
    ];
    for outcome in refused {
        assert!(outcome.is_err(), "{outcome:?}");
    }
}

#[test]
fn the_stored_document_round_trips_with_kafkas_names() {
    let document = AclDocument {
        acls: vec![deny_topic(
            "ord",
            PatternType::Prefixed,
            "User:bob",
            AclOperation::DescribeConfigs,
        )],
    };
    let text = serde_json::to_string(&document).unwrap();
    assert!(
        text.contains("\"PREFIXED\"") && text.contains("\"DESCRIBE_CONFIGS\""),
        "{text}"
    );
    let back: AclDocument = serde_json::from_str(&text).unwrap();
    assert_eq!(back, document);
}

#[test]
fn operation_bit_fields_use_the_operation_codes() {
    assert_eq!(operations_bit_field([AclOperation::Read]), 1 << 3);
    assert_eq!(
        operations_bit_field([AclOperation::Describe, AclOperation::Write]),
        (1 << 8) | (1 << 4)
    );
}
