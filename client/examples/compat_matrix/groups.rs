//! Group scenarios: two members and a rebalance, commit and resume.

use super::*;

/// A group member consuming `topic`, recording what it handled in `seen` as `name`.
pub(crate) async fn member(
    ctx: &Ctx,
    group: &str,
    topic: &str,
    name: &str,
    seen: &Seen,
) -> Check<(StopHandle, Task<Result<(), ClientError>>)> {
    let mut consumer = GroupConsumer::connect(GroupConfig {
        client: ctx.client(name),
        group: group.to_string(),
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(500),
        attempts: 1,
        dead_letter_topic: Some(ctx.name("-dlq")),
        start: OffsetSpec::Earliest,
        ..GroupConfig::default()
    })
    .await?;
    let seen = Arc::clone(seen);
    let who = name.to_string();
    consumer.subscribe(topic, move |record| {
        let value = record
            .value
            .as_deref()
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        seen.lock().unwrap_or_else(PoisonError::into_inner).push((
            who.clone(),
            record.partition,
            record.offset,
            value,
        ));
        Ok(())
    });
    let stop = consumer.stop_handle();
    let task = tokio::spawn(async move { consumer.run().await });
    Ok((stop, Task(task)))
}

/// Partitions of each member (by client id) once the group is stable.
pub(crate) fn holdings(group: &GroupDescription) -> BTreeMap<String, BTreeSet<i32>> {
    group
        .members
        .iter()
        .map(|member| {
            let partitions = member
                .assignment
                .iter()
                .flat_map(|(_, partitions)| partitions.iter().copied())
                .collect();
            (member.client_id.clone(), partitions)
        })
        .collect()
}

pub(crate) async fn stopped(
    name: &str,
    stop: &StopHandle,
    task: &mut Task<Result<(), ClientError>>,
) -> Check {
    stop.stop();
    let started = Instant::now();
    let outcome = match tokio::time::timeout(Duration::from_secs(20), &mut task.0).await {
        Err(_) => fail(format!("member {name} did not stop within 20 s")),
        Ok(Err(error)) => fail(format!("member {name} crashed: {error}")),
        Ok(Ok(Err(error))) => fail(format!("member {name} failed: {error}")),
        Ok(Ok(Ok(()))) => Ok(()),
    };
    log(&format!(
        "member {name} stopped in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    outcome
}

pub(crate) async fn group_rebalance(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    let group = ctx.name("");
    ctx.create_topic(&admin, &topic, 4, &BTreeMap::new())
        .await?;
    let all: BTreeSet<i32> = (0..4).collect();
    let (a_id, b_id) = ("compat-lmq-native-a", "compat-lmq-native-b");
    let seen: Seen = Arc::default();
    let (stop_a, mut task_a) = member(ctx, &group, &topic, "a", &seen).await?;
    let (stop_b, mut task_b) = member(ctx, &group, &topic, "b", &seen).await?;
    let shared = eventually(Duration::from_secs(30), || async {
        let described = admin.describe_group(&group).await?;
        let held = holdings(&described);
        let (a, b) = (held.get(a_id), held.get(b_id));
        Ok(match (a, b) {
            (Some(a), Some(b))
                if described.state == "Stable"
                    && held.len() == 2
                    && !a.is_empty()
                    && !b.is_empty()
                    && a.is_disjoint(b)
                    && a | b == all =>
            {
                Ok((a.clone(), b.clone()))
            }
            _ => Err(format!(
                "group {} holds {held:?}; expected a and b non-empty, disjoint, covering 0..3",
                described.state
            )),
        })
    })
    .await?;
    let (owned_a, owned_b) = shared;
    log(&format!("a holds {owned_a:?}, b holds {owned_b:?}"));

    let producer = ctx.producer(Acks::All, Codec::None, true).await?;
    let spread = |prefix: &str, count: usize| -> Vec<Record> {
        (0..count)
            .map(|index| Record {
                key: bytes(format!("k-{prefix}-{index}")),
                value: bytes(format!("{prefix}-{index}")),
                headers: Vec::new(),
                partition: Some(i32::try_from(index % 4).unwrap_or(0)),
                timestamp: None,
            })
            .collect()
    };
    ctx.send_all(&producer, &topic, &spread("one", 200)).await?;
    let of = |prefix: &str| -> Vec<(String, i32, i64, String)> {
        seen_now(&seen)
            .into_iter()
            .filter(|(_, _, _, value)| value.starts_with(&format!("{prefix}-")))
            .collect()
    };
    let distinct = |rows: &[(String, i32, i64, String)]| -> usize {
        rows.iter()
            .map(|(_, _, _, value)| value)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let _ = eventually(Duration::from_secs(30), || async {
        let got = distinct(&of("one"));
        Ok(if got >= 200 {
            Ok(())
        } else {
            Err(format!("{got} of 200"))
        })
    })
    .await;
    let one = of("one");
    if one.len() != 200 || distinct(&one) != 200 {
        return fail(format!(
            "the 200 records were consumed {} times, {} distinct, within 30 s",
            one.len(),
            distinct(&one)
        ));
    }
    let wrong: Vec<_> = one
        .iter()
        .filter(|(who, partition, _, _)| {
            let owned = if who == "a" { &owned_a } else { &owned_b };
            !owned.contains(partition)
        })
        .take(2)
        .collect();
    if !wrong.is_empty() {
        return fail(format!(
            "records consumed by a member not owning their partition: {wrong:?}"
        ));
    }

    stopped("b", &stop_b, &mut task_b).await?;
    let left = Instant::now();
    eventually(Duration::from_secs(30), || async {
        let described = admin.describe_group(&group).await?;
        let held = holdings(&described);
        Ok(
            if described.state == "Stable" && held.len() == 1 && held.get(a_id) == Some(&all) {
                Ok(())
            } else {
                Err(format!(
                    "after b left, group {} holds {held:?}; expected a alone with 0..3",
                    described.state
                ))
            },
        )
    })
    .await?;
    let moved = left.elapsed().as_secs_f64();
    log(&format!(
        "b's partitions moved to a {moved:.1} s after b stopped"
    ));
    if moved >= 8.0 {
        // Not a failure of the scenario (it asks for the hand-over, not its speed).
        log("that is the session timeout (10 s): b's LeaveGroup did not take effect");
    }
    ctx.send_all(&producer, &topic, &spread("two", 100)).await?;
    producer.close().await;
    let _ = eventually(Duration::from_secs(30), || async {
        let got = distinct(&of("two"));
        Ok(if got >= 100 {
            Ok(())
        } else {
            Err(format!("{got} of 100"))
        })
    })
    .await;
    let two = of("two");
    let by_a = two.iter().filter(|(who, _, _, _)| who == "a").count();
    if two.len() != 100 || distinct(&two) != 100 || by_a != 100 {
        return fail(format!(
            "after b left, the 100 new records were consumed {} times ({} distinct, {by_a} by a)",
            two.len(),
            distinct(&two)
        ));
    }
    let again = of("one").len();
    if again != 200 {
        return fail(format!(
            "{} of the first 200 records were consumed again after b left (b's commit lost?)",
            again - 200
        ));
    }
    stopped("a", &stop_a, &mut task_a).await
}

pub(crate) async fn commit_resume(ctx: &Ctx) -> Check {
    let admin = ctx.admin().await?;
    let topic = ctx.name("");
    let group = ctx.name("");
    ctx.create_topic(&admin, &topic, 1, &BTreeMap::new())
        .await?;
    // The group consumer commits after every batch its handler finished, and has no manual
    // commit: so the first 100 records are produced alone, the member stops after the 100th
    // (committing offset 100 before it leaves), and the last 50 come after.
    produce_to_zero(ctx, &topic, "v", 0..100).await?;
    let seen: Seen = Arc::default();
    let (stop, mut task) = member(ctx, &group, &topic, "first", &seen).await?;
    let _ = eventually(Duration::from_secs(30), || async {
        let got = seen_now(&seen).len();
        Ok(if got >= 100 {
            Ok(())
        } else {
            Err(format!("{got} of 100"))
        })
    })
    .await;
    stopped("first", &stop, &mut task).await?;
    let offsets: Vec<i64> = seen_now(&seen).iter().map(|row| row.2).collect();
    if offsets != (0..100).collect::<Vec<i64>>() {
        return fail(format!(
            "the first member processed {} records, offsets {:?}..{:?}; expected 0..99",
            offsets.len(),
            offsets.first(),
            offsets.last()
        ));
    }
    let committed = admin
        .group_lag(&group)
        .await?
        .into_iter()
        .find(|lag| lag.topic == topic && lag.partition == 0)
        .and_then(|lag| lag.committed);
    if committed != Some(100) {
        return fail(format!(
            "committed offset after the first member closed: {committed:?}, expected 100"
        ));
    }
    let last = produce_to_zero(ctx, &topic, "v", 100..150).await?;
    let resumed: Seen = Arc::default();
    let (stop, mut task) = member(ctx, &group, &topic, "second", &resumed).await?;
    let started = Instant::now();
    let _ = eventually(Duration::from_secs(30), || async {
        let got = seen_now(&resumed).len();
        Ok(if got >= 50 {
            Ok(())
        } else {
            Err(format!("{got} of 50"))
        })
    })
    .await;
    let waited = started.elapsed().as_secs_f64();
    log(&format!(
        "the second member read {} records in {waited:.1} s",
        seen_now(&resumed).len()
    ));
    if waited >= 8.0 {
        // The coordinator waited for the first member's session to expire before it let the
        // second one in: the first member's LeaveGroup did not take effect.
        log(
            "that is the first member's session timeout (10 s): its LeaveGroup did not take effect",
        );
    }
    // A moment more, for anything that should not come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stopped("second", &stop, &mut task).await?;
    let rows = seen_now(&resumed);
    let offsets: Vec<i64> = rows.iter().map(|row| row.2).collect();
    if offsets != (100..150).collect::<Vec<i64>>() {
        return fail(format!(
            "the new member processed {} records, offsets {:?}..{:?}; expected 100..149",
            offsets.len(),
            offsets.first(),
            offsets.last()
        ));
    }
    for (row, record) in rows.iter().zip(&last) {
        if record.value.as_deref() != Some(row.3.as_bytes()) {
            return fail(format!("offset {}: value {:?}", row.2, row.3));
        }
    }
    Ok(())
}
