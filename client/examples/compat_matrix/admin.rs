//! Admin scenarios: topics and configs.

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
