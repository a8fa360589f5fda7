//! The usage store's client API as billing will use it, on a simulated cluster: page through
//! an account's key range, delete exactly what was read, and see later usage survive.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

use pessimist_core::history::History;
use pessimist_core::node::KnobSettings;
use pessimist_core::seams::clock::Clock;
use pessimist_core::seams::net::{Transport, TransportOptions};
use pessimist_core::seams::rng::rng_for;
use pessimist_core::store::client::{ClientOptions, StoreClient, Writer};
use pessimist_core::store::counter::Counter;
use pessimist_core::store::StoreSettings;
use pessimist_sim::store::workload::usage_key;
use pessimist_sim::world::{NodeSpec, Program, World};
use serde_json::json;

fn cluster(knobs: serde_json::Value) -> (World, StoreClient) {
    let names: Vec<String> = (1..=5).map(|i| format!("store-{i}")).collect();
    let servers: Vec<NodeSpec> =
        names.iter().map(|name| NodeSpec { name: name.clone(), role: "store".into() }).collect();
    let program: Program = Arc::new(|context| Box::pin(pessimist_core::store::serve(context)));
    let settings = StoreSettings::from_knobs(&knobs).expect("valid knobs");
    let seed = madsim::runtime::Handle::current().seed();
    let clients = ["client-1".to_string()];
    let world = World::build(seed, History::new(), &servers, &clients, knobs, program);
    let (transport, _) = Transport::unbound(
        "client-1",
        world.book().clone(),
        TransportOptions::default(),
        world.link_faults().clone(),
        rng_for(seed, "test/transport"),
    );
    let client = StoreClient::new(
        transport,
        &names,
        settings,
        ClientOptions::default(),
        Clock::system(),
        rng_for(seed, "test/client"),
    );
    (world, client)
}

/// Every page of `[start, end)`, one key per page, so resuming is exercised.
async fn scan_all(client: &mut StoreClient, start: &str, end: &str) -> Vec<(String, Counter)> {
    let mut found = Vec::new();
    let mut from = start.to_string();
    loop {
        let page = client.scan(&from, Some(end), 1).await.expect("a healthy cluster scans");
        found.extend(page.entries);
        match page.resume {
            Some(resume) => from = resume,
            None => return found,
        }
    }
}

#[madsim::test]
async fn billing_scans_a_range_and_deletes_exactly_what_it_read() {
    let (world, mut client) = cluster(json!({ "store": { "n": 3, "r": 2, "w": 2 } }));
    let task = async move {
        tokio::time::sleep(Duration::from_millis(500)).await; // the nodes bind
        let mut writer = Writer::new("api-1#0");
        for window in 0..4 {
            let increments: Vec<(String, u64)> =
                (0..3).map(|account| (usage_key(account, window), 10 + account)).collect();
            let flushed = client.flush(&mut writer, &increments).await;
            assert!(flushed.outcomes.iter().all(Result::is_ok), "{flushed:?}");
        }
        // Billing reads account 1's closed windows (0 and 1)...
        let closed = scan_all(&mut client, &usage_key(1, 0), &usage_key(1, 2)).await;
        let keys: Vec<&str> = closed.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, [usage_key(1, 0), usage_key(1, 1)]);
        assert!(closed.iter().all(|(_, state)| state.value() == 11));
        // ...archives them and deletes what it read, while late usage of window 1 arrives.
        let late = client.flush(&mut writer, &[(usage_key(1, 1), 5)]).await;
        assert!(late.outcomes.iter().all(Result::is_ok));
        for (key, state) in &closed {
            client.delete(key, state).await.expect("a healthy cluster deletes");
        }
        let left = scan_all(&mut client, &usage_key(1, 0), &usage_key(1, 9)).await;
        let values: Vec<(&str, u64)> = left.iter().map(|(k, s)| (k.as_str(), s.value())).collect();
        assert_eq!(
            values,
            [
                (usage_key(1, 1).as_str(), 5),
                (usage_key(1, 2).as_str(), 11),
                (usage_key(1, 3).as_str(), 11)
            ]
        );
        // The deleted key stays a tombstone: every count is still recorded, none is live.
        let gone = client.read(&usage_key(1, 0)).await.unwrap().counter.expect("a tombstone");
        assert!(gone.is_deleted());
        assert_eq!(gone.counted(), 11);
    };
    world.client("client-1").spawn(task).await.expect("the billing task panicked");
}
