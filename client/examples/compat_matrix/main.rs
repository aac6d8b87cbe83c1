//! The native client's column of the compatibility matrix (compat-tests/clients/CONTRACT.md):
//! prints one `PASS s`, `FAIL s: reason` or `N/A s: reason` line per scenario on stdout,
//! diagnostics on stderr. Every scenario is bounded (85 s here, 90 s by the contract) and
//! works on its own topics and groups, `compat-lmq-native-<scenario>-<unique suffix>`.
//! Every scenario applies: the client has offsets-for-times, DeleteRecords and transactions.
//!
//! `cargo run -p lmq-client --example compat_matrix -- 127.0.0.1:9092 [SCENARIO...]`

#![allow(
    clippy::disallowed_methods,
    reason = "the compatibility driver measures real clients against real brokers"
)]

mod admin;
mod checks;
mod consume;
mod errors;
mod groups;
mod produce;
mod support;
mod transactions;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use admin::*;
use bytes::Bytes;
use checks::*;
use consume::*;
use errors::*;
use groups::*;
use lmq::admin::GroupDescription;
use lmq::{
    Acks, Admin, ClientConfig, ClientError, Codec, ConsumedRecord, Consumer, ConsumerConfig,
    Delivery, GroupConfig, GroupConsumer, OffsetSpec, Producer, ProducerConfig, Record, StopHandle,
};
use produce::*;
use support::*;
use tokio::task::JoinHandle;
use transactions::*;

const SCENARIOS: &[&str] = &[
    "metadata",
    "produce-acks-0",
    "produce-acks-1",
    "produce-acks-all",
    "compression-gzip",
    "compression-snappy",
    "compression-lz4",
    "compression-zstd",
    "keys-headers-nulls",
    "large-message",
    "consume-beginning",
    "consume-offset",
    "consume-timestamp",
    "consume-end",
    "idempotent",
    "group-rebalance",
    "commit-resume",
    "admin-topics",
    "admin-configs",
    "delete-records",
    "error-unknown-topic",
    "error-invalid-topic",
    "error-too-large",
    "error-out-of-range",
    "transactions",
];

async fn scenario(ctx: &Ctx) -> Check {
    match ctx.scenario.as_str() {
        "metadata" => metadata(ctx).await,
        "produce-acks-0" => produce_acks(ctx, Acks::None).await,
        "produce-acks-1" => produce_acks(ctx, Acks::Leader).await,
        "produce-acks-all" => produce_acks(ctx, Acks::All).await,
        "compression-gzip" => compression(ctx, Codec::Gzip).await,
        "compression-snappy" => compression(ctx, Codec::Snappy).await,
        "compression-lz4" => compression(ctx, Codec::Lz4).await,
        "compression-zstd" => compression(ctx, Codec::Zstd).await,
        "keys-headers-nulls" => keys_headers_nulls(ctx).await,
        "large-message" => large_message(ctx).await,
        "consume-beginning" => consume_from(ctx, 50, 0).await,
        "consume-offset" => consume_from(ctx, 100, 40).await,
        "consume-timestamp" => consume_timestamp(ctx).await,
        "consume-end" => consume_end(ctx).await,
        "idempotent" => idempotent(ctx).await,
        "group-rebalance" => group_rebalance(ctx).await,
        "commit-resume" => commit_resume(ctx).await,
        "admin-topics" => admin_topics(ctx).await,
        "admin-configs" => admin_configs(ctx).await,
        "delete-records" => delete_records(ctx).await,
        "error-unknown-topic" => error_unknown_topic(ctx).await,
        "error-invalid-topic" => error_invalid_topic(ctx).await,
        "error-too-large" => error_too_large(ctx).await,
        "error-out-of-range" => error_out_of_range(ctx).await,
        "transactions" => transactions(ctx).await,
        _ => fail("unknown scenario"),
    }
}

async fn metadata(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let brokers = admin.cluster().brokers().await;
    if brokers.is_empty() {
        return fail("the metadata lists no brokers");
    }
    for (node, address) in &brokers {
        let (host, port) = address.rsplit_once(':').unwrap_or(("", ""));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return fail(format!("broker {node} has no host:port: {address:?}"));
        }
    }
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let info = admin.describe_topic(&topic).await?;
    let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    if partitions != [0, 1, 2] || info.partitions.iter().any(|p| p.leader < 0) {
        return fail(format!("{topic} is described as {info:?}"));
    }
    log(&format!(
        "brokers {brokers:?}; {topic}: 3 partitions with leaders"
    ));
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(bootstrap) = args.next() else {
        eprintln!("usage: compat_matrix BOOTSTRAP [SCENARIO...]");
        std::process::exit(2);
    };
    let mut chosen: Vec<String> = args.collect();
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(ToString::to_string).collect();
    }
    for name in chosen {
        let ctx = Ctx {
            bootstrap: bootstrap.clone(),
            suffix: format!("{:x}-{:x}", now_nanos() % (1 << 40), std::process::id()),
            scenario: name.clone(),
        };
        let started = Instant::now();
        let line = match tokio::time::timeout(BUDGET, scenario(&ctx)).await {
            Ok(Ok(())) => format!("PASS {name}"),
            Ok(Err(Stop::Fail(reason))) => format!("FAIL {name}: {}", one_line(&reason)),
            Err(_) => format!("FAIL {name}: did not finish within {} s", BUDGET.as_secs()),
        };
        log(&format!("{name}: {:.1} s", started.elapsed().as_secs_f64()));
        println!("{line}");
    }
}
