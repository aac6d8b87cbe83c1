//! Admin scenarios: topics, configs, deleting records.

use super::*;

pub(crate) async fn admin_topics(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 3, &BTreeMap::new())
        .await?;
    let listed = |wanted: bool| {
        let admin = &admin;
        let topic = &topic;
        move || async move {
            let names: BTreeSet<String> = admin
                .list_topics(false)
                .await?
                .into_iter()
                .map(|info| info.name)
                .collect();
            Ok(if names.contains(topic) == wanted {
                Ok(())
            } else {
                Err(format!(
                    "{topic} {} the listing",
                    if wanted { "is not in" } else { "is still in" }
                ))
            })
        }
    };
    eventually(Duration::from_secs(10), listed(true)).await?;
    admin.create_partitions(&topic, 5).await?;
    eventually(Duration::from_secs(10), || async {
        let count = admin.describe_topic(&topic).await?.partitions.len();
        Ok(if count == 5 {
            Ok(())
        } else {
            Err(format!(
                "{topic} is described with {count} partitions, expected 5"
            ))
        })
    })
    .await?;
    admin.delete_topic(&topic).await?;
    eventually(Duration::from_secs(10), listed(false)).await
}

pub(crate) async fn admin_configs(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    let configs = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
    ctx.create_topic(&admin, &topic, 3, &configs).await?;
    let shows = |wanted: &'static str| {
        let admin = &admin;
        let topic = &topic;
        move || async move {
            let value = admin
                .describe_configs(topic)
                .await?
                .into_iter()
                .find(|entry| entry.name == "retention.ms")
                .and_then(|entry| entry.value);
            Ok(if value.as_deref() == Some(wanted) {
                Ok(())
            } else {
                Err(format!("retention.ms is {value:?}, expected {wanted}"))
            })
        }
    };
    eventually(Duration::from_secs(10), shows("3600000")).await?;
    let altered = BTreeMap::from([("retention.ms".to_string(), "7200000".to_string())]);
    admin.alter_configs(&topic, &altered, &[]).await?;
    eventually(Duration::from_secs(10), shows("7200000")).await
}

/// 100 records to partition 0, records before 30 deleted: the log start is 30 and a
/// consumer from the earliest offset starts there.
pub(crate) async fn delete_records(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    ctx.create_topic(&admin, &topic, 1, &BTreeMap::new())
        .await?;
    let sent = produce_to_zero(ctx, &topic, "v", 0..100).await?;
    let low_watermark = admin.delete_records(&topic, 0, 30).await?;
    if low_watermark != 30 {
        return fail(format!(
            "DeleteRecords answered log start {low_watermark}, expected 30"
        ));
    }
    let earliest = admin.list_offsets(&topic, OffsetSpec::Earliest).await?;
    if earliest != [(0, 30)] {
        return fail(format!("earliest offsets {earliest:?}, expected [(0, 30)]"));
    }
    let consumed = ctx
        .read(
            &topic,
            &[(0, OffsetSpec::Earliest)],
            70,
            Duration::from_secs(30),
        )
        .await?;
    exactly(&consumed, 30..100, &sent[30..])
}
