//! Tests of the simulated world itself: partitions block what they should and nothing else,
//! and hold what they block until after the heal; crashes lose exactly the un-fsynced writes.
//! Each runs under `#[madsim::test]`, so `MADSIM_TEST_SEED` and `MADSIM_TEST_NUM` choose the
//! seeds, and a failure prints the seed that replays it.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pessimist_core::history::History;
use pessimist_core::seams::disk::decode_records;
use pessimist_core::seams::net::{Transport, TransportOptions};
use pessimist_core::seams::rng::rng_for;
use pessimist_sim::fault::Fault;
use pessimist_sim::world::{NodeSpec, Program, World};

/// (receiver, sender, value, time received in ms)
type Deliveries = Arc<Mutex<Vec<(String, String, u64, u64)>>>;

/// Every server listens and writes down what it receives, with the time.
fn recording_program(deliveries: Deliveries, history: History) -> Program {
    Arc::new(move |context| {
        let (deliveries, history) = (deliveries.clone(), history.clone());
        Box::pin(async move {
            let rng = context.rng("transport");
            let (_transport, mut inbox) = Transport::<u64>::bind(
                &context.name,
                context.book.clone(),
                TransportOptions::default(),
                context.link_faults.clone(),
                rng,
            )
            .await
            .expect("bind");
            while let Some(message) = inbox.recv().await {
                deliveries.lock().unwrap().push((
                    context.name.clone(),
                    message.from().to_string(),
                    message.body,
                    history.now_us() / 1000,
                ));
            }
        })
    })
}

fn build(names: &[&str], deliveries: &Deliveries) -> World {
    let history = History::new();
    let servers: Vec<NodeSpec> =
        names.iter().map(|name| NodeSpec { name: name.to_string(), role: "test".into() }).collect();
    let program = recording_program(deliveries.clone(), history.clone());
    World::build(
        madsim::runtime::Handle::current().seed(),
        history,
        &servers,
        &["client-1".to_string()],
        serde_json::Value::Null,
        program,
    )
}

/// A transport of its own for node `from`, which listens nowhere: its connections are new.
fn transport_of(world: &World, from: &str) -> Transport<u64> {
    Transport::unbound(
        from,
        world.book().clone(),
        TransportOptions::default(),
        world.link_faults().clone(),
        rng_for(1, from),
    )
    .0
}

/// Sends `values` from node `from` to node `to`, one per 10 ms, from a task on `from`.
fn send_from(
    world: &World,
    from: &str,
    to: &str,
    values: std::ops::Range<u64>,
) -> madsim::task::JoinHandle<()> {
    let transport = transport_of(world, from);
    let to = to.to_string();
    world.spawn_on_server(from, async move {
        for value in values {
            let _ = transport.send(&to, &value).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

fn received(deliveries: &Deliveries, by: &str, from: &str) -> Vec<(u64, u64)> {
    deliveries
        .lock()
        .unwrap()
        .iter()
        .filter(|(to, sender, _, _)| to == by && sender == from)
        .map(|(_, _, value, at)| (*value, *at))
        .collect()
}

#[madsim::test]
async fn nothing_is_delivered_across_a_partition() {
    let deliveries: Deliveries = Arc::default();
    let mut world = build(&["a", "b", "c"], &deliveries);
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_from(&world, "a", "b", 0..10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(received(&deliveries, "b", "a").len(), 10, "healthy network delivers");

    let partition_start_ms = world.history().now_us() / 1000;
    world.inject(0, &Fault::Partition { groups: vec![vec!["a".into()]] });
    // Over an open connection and over new ones, in both directions.
    let sends = [
        send_from(&world, "a", "b", 100..150),
        send_from(&world, "c", "a", 200..250),
        send_from(&world, "b", "c", 300..350),
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let heal_ms = world.history().now_us() / 1000;
    world.heal(0);
    for send in sends {
        send.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    for (by, from) in [("b", "a"), ("a", "c")] {
        let across: Vec<(u64, u64)> = received(&deliveries, by, from)
            .into_iter()
            .filter(|(value, _)| *value >= 100)
            .collect();
        assert!(across.iter().all(|(_, at)| *at >= heal_ms), "{from}->{by} delivered during the partition ({partition_start_ms}..{heal_ms} ms): {across:?}");
    }
    assert_eq!(received(&deliveries, "c", "b").len(), 50, "the majority side talks throughout");
    assert!(received(&deliveries, "c", "b").iter().all(|(_, at)| *at < heal_ms));
}

/// A peer that crashed and came back gets the next message: the sender finds its old
/// connection ended before writing into it (even one it only ever sent on, whose reader it
/// looks at only when the stream stirs it), and dials again.
#[madsim::test]
async fn a_message_sent_after_the_peer_restarted_reaches_it() {
    let deliveries: Deliveries = Arc::default();
    let mut world = build(&["a", "b"], &deliveries);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let transport = transport_of(&world, "a");
    let sending = transport.clone();
    let before = world.spawn_on_server("a", async move {
        for value in 0..5 {
            sending.send("b", &value).await.expect("b is up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    before.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(received(&deliveries, "b", "a").len(), 5);

    world.crash("b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    world.restart("b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = world.spawn_on_server("a", async move { transport.send("b", &100).await });
    assert_eq!(after.await.unwrap(), Ok(()), "sent on a fresh connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let values: Vec<u64> =
        received(&deliveries, "b", "a").into_iter().map(|(value, _)| value).collect();
    assert_eq!(values, [0, 1, 2, 3, 4, 100], "the message after the restart arrives");
}

#[madsim::test]
async fn a_one_way_partition_blocks_one_direction_only() {
    let deliveries: Deliveries = Arc::default();
    let mut world = build(&["a", "b"], &deliveries);
    tokio::time::sleep(Duration::from_millis(100)).await;
    world.inject(0, &Fault::OneWay { from: "a".into(), to: "b".into() });
    let sends = [send_from(&world, "a", "b", 0..50), send_from(&world, "b", "a", 0..50)];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let heal_ms = world.history().now_us() / 1000;
    assert!(received(&deliveries, "b", "a").is_empty(), "a -> b is blocked");
    assert_eq!(received(&deliveries, "a", "b").len(), 50, "b -> a still flows");
    world.heal(0);
    for send in sends {
        send.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    send_from(&world, "a", "b", 1000..1001).await.unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        received(&deliveries, "b", "a").iter().any(|(value, at)| *value == 1000 && *at >= heal_ms),
        "a -> b flows again after the heal"
    );
}

/// A partition holds what a connection sends into it rather than dropping it, as TCP does, and
/// the heal releases it late: madsim retries a held packet after 1 ms, then after twice the
/// previous wait, capped at 10 s (TCP's retransmission backoff plays the same part). So a
/// stream that sent into a 10 s partition resumes at the retry 16.4 s after that send, about
/// 6 s after the heal, in order; a connection opened after the heal is not held.
#[madsim::test]
async fn a_partition_holds_a_stream_until_the_retry_after_its_heal() {
    let deliveries: Deliveries = Arc::default();
    let mut world = build(&["a", "b", "c"], &deliveries);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let transport = transport_of(&world, "a");
    let sending = transport.clone();
    let opened = world.spawn_on_server("a", async move { sending.send("b", &0).await });
    assert_eq!(opened.await.unwrap(), Ok(()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(received(&deliveries, "b", "a").len(), 1, "a's connection to b is open");

    let sent_ms = world.history().now_us() / 1000;
    world.inject(0, &Fault::Partition { groups: vec![vec!["a".into()]] });
    let held = world.spawn_on_server("a", async move {
        for value in 1..11 {
            transport.send("b", &value).await.expect("the connection takes it");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let heal_ms = world.history().now_us() / 1000;
    world.heal(0);
    held.await.unwrap();
    send_from(&world, "c", "a", 100..101).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;

    let across = received(&deliveries, "b", "a");
    let values: Vec<u64> = across.iter().map(|(value, _)| *value).collect();
    assert_eq!(values, (0..11).collect::<Vec<u64>>(), "held, not lost, and in order");
    let first_at = across[1].1;
    // The retries after the send: 1 ms, 3 ms, 7 ms, ... 8,191 ms, 16,383 ms.
    assert!(
        (sent_ms + 16_383..=sent_ms + 16_383 + 100).contains(&first_at),
        "released at the first retry after the heal ({heal_ms} ms), 16.4 s after the send \
         ({sent_ms} ms): {first_at} ms"
    );
    let fresh = received(&deliveries, "a", "c");
    assert!(
        fresh.len() == 1 && fresh.iter().all(|(_, at)| *at < heal_ms + 1_000),
        "a connection opened after the heal is not held: {fresh:?}"
    );
}

#[madsim::test]
async fn link_rules_duplicate_and_delay_frames() {
    let deliveries: Deliveries = Arc::default();
    let mut world = build(&["a", "b"], &deliveries);
    tokio::time::sleep(Duration::from_millis(100)).await;
    world.inject(0, &Fault::Duplicate { probability: 1.0 });
    send_from(&world, "a", "b", 0..20).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received(&deliveries, "b", "a").len(), 40, "every frame twice");
    world.heal(0);
    world.inject(
        1,
        &Fault::LinkDelay { from: "a".into(), to: "b".into(), delay_ms: 500, jitter_ms: 0 },
    );
    let sent_ms = world.history().now_us() / 1000;
    send_from(&world, "a", "b", 100..101).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, at) = received(&deliveries, "b", "a")
        .into_iter()
        .find(|(value, _)| *value == 100)
        .expect("delayed, not lost");
    assert!(at >= sent_ms + 500, "sent at {sent_ms} ms, received at {at} ms");
}

/// Writes four records, fsyncs after the second; only on its first incarnation.
fn writing_program(done: Arc<Mutex<bool>>) -> Program {
    Arc::new(move |context| {
        let done = done.clone();
        Box::pin(async move {
            if context.incarnation > 0 {
                return;
            }
            for (index, payload) in [b"one", b"two", b"thr", b"fou"].iter().enumerate() {
                context.disk.append("log", *payload).await.unwrap();
                if index == 1 {
                    context.disk.fsync("log").await.unwrap();
                }
            }
            *done.lock().unwrap() = true;
            std::future::pending::<()>().await;
        })
    })
}

#[madsim::test]
async fn a_crash_loses_exactly_the_unsynced_writes() {
    let done = Arc::new(Mutex::new(false));
    let servers = [NodeSpec { name: "a".into(), role: "test".into() }];
    let mut world = World::build(
        1,
        History::new(),
        &servers,
        &[],
        serde_json::Value::Null,
        writing_program(done.clone()),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(*done.lock().unwrap());
    assert_eq!(
        decode_records("log", &world.disk("a").visible_bytes("log")).unwrap().records.len(),
        4
    );
    world.inject(0, &Fault::Crash { node: "a".into() });
    world.heal(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = decode_records("log", &world.disk("a").visible_bytes("log")).unwrap().records;
    assert_eq!(records, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(world.disk("a").stats().crashes, 1);
}

#[madsim::test]
async fn heal_all_leaves_no_fault_behind() {
    let deliveries: Deliveries = Arc::default();
    let mut world = build(&["a", "b", "c"], &deliveries);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let faults = [
        Fault::Isolate { node: "a".into() },
        Fault::FrameLoss { probability: 1.0 },
        Fault::Crash { node: "c".into() },
        Fault::Pause { node: "b".into() },
        Fault::SlowDisk { node: "b".into(), factor: 100 },
        Fault::ClockOffset { node: "a".into(), offset_ms: 9_000 },
    ];
    for (id, fault) in faults.iter().enumerate() {
        world.inject(id as u64, fault);
    }
    world.heal_all();
    assert_eq!(world.link_faults().rule("a", "b"), None);
    assert_eq!(world.clock("a").error_ms(), 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a")] {
        send_from(&world, from, to, 0..1).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    for (by, from) in [("b", "a"), ("c", "b"), ("a", "c")] {
        assert_eq!(received(&deliveries, by, from).len(), 1, "{from} -> {by} after heal_all");
    }
}
