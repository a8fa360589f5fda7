//! Benchmark: messages per wall-second through raw madsim TCP and through pessimist's
//! transport (postcard framing, connection management, the link-fault layer consulted on
//! every frame, no fault injected), on the same ping-pong workload.
//!
//! Run: `cargo bench -p pessimist-sim --bench transport`. Target: the transport keeps at least
//! 0.7 of raw madsim's rate.

// madsim's runtime and simulated TCP exist only in the simulation build (the default).
#[cfg(madsim)]
mod simulated {

    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::{Duration, Instant};

    use madsim::runtime::Runtime;
    use pessimist_core::seams::net::{
        AddressBook, LinkFaults, LinkRule, Transport, TransportOptions,
    };
    use pessimist_core::seams::rng::rng_for;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SERVERS: usize = 2;
    const CLIENTS: usize = 2;
    const ROUND_TRIPS_PER_PAIR: u64 = 50_000;
    const PAYLOAD_BYTES: usize = 60;
    const PORT: u16 = 7000;

    /// A message shaped like a Raft append-entries acknowledgement: a few integers, encoded by
    /// postcard into about the payload size the raw workload sends.
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Ping {
        term: u64,
        index: u64,
        commit: u64,
        from: u32,
        to: u32,
        success: bool,
        reject_hint: u64,
        sequence: u64,
        checksum: u64,
    }

    fn ping() -> Ping {
        let big = u64::MAX / 3;
        Ping {
            term: big,
            index: big,
            commit: big,
            from: 1,
            to: 2,
            success: true,
            reject_hint: big,
            sequence: big,
            checksum: big,
        }
    }

    fn server_address(index: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1)), PORT)
    }

    fn client_ip(index: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, index as u8 + 1))
    }

    /// Raw madsim TCP: a 4-byte length prefix, the payload, a flush; the server echoes.
    async fn raw_ping_pong() {
        let handle = madsim::runtime::Handle::current();
        for index in 0..SERVERS {
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let listener = TcpListener::bind(server_address(index)).await.unwrap();
                    loop {
                        let (mut stream, _) = listener.accept().await.unwrap();
                        tokio::spawn(async move {
                            let mut frame = vec![0u8; 4 + PAYLOAD_BYTES];
                            while stream.read_exact(&mut frame).await.is_ok() {
                                stream.write_all(&frame).await.unwrap();
                                stream.flush().await.unwrap();
                            }
                        });
                    }
                });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let node =
                handle.create_node().name(format!("client-{client}")).ip(client_ip(client)).build();
            for server in 0..SERVERS {
                tasks.push(node.spawn(async move {
                    let mut stream = TcpStream::connect(server_address(server)).await.unwrap();
                    let mut frame = vec![0u8; 4 + PAYLOAD_BYTES];
                    frame[..4].copy_from_slice(&(PAYLOAD_BYTES as u32).to_be_bytes());
                    let mut answer = vec![0u8; 4 + PAYLOAD_BYTES];
                    for _ in 0..ROUND_TRIPS_PER_PAIR {
                        stream.write_all(&frame).await.unwrap();
                        stream.flush().await.unwrap();
                        stream.read_exact(&mut answer).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// pessimist's transport: `call` and `reply`, with the fault layer consulted on every frame.
    async fn transport_ping_pong(faults: LinkFaults) {
        let handle = madsim::runtime::Handle::current();
        let book = AddressBook::new(
            (0..SERVERS).map(|index| (format!("server-{index}"), server_address(index))).collect(),
        );
        for index in 0..SERVERS {
            let (book, faults) = (book.clone(), faults.clone());
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let name = format!("server-{index}");
                    let (transport, mut inbox) = Transport::<Ping>::bind(
                        &name,
                        book,
                        TransportOptions::default(),
                        faults,
                        rng_for(1, &name),
                    )
                    .await
                    .unwrap();
                    while let Some(request) = inbox.recv().await {
                        let body = request.body.clone();
                        transport.reply(&request, body).await.unwrap();
                    }
                });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let node =
                handle.create_node().name(format!("client-{client}")).ip(client_ip(client)).build();
            for server in 0..SERVERS {
                let (book, faults) = (book.clone(), faults.clone());
                tasks.push(node.spawn(async move {
                    let name = format!("client-{client}-{server}");
                    let (transport, _inbox) = Transport::<Ping>::unbound(
                        &name,
                        book,
                        TransportOptions::default(),
                        faults,
                        rng_for(1, &name),
                    );
                    let to = format!("server-{server}");
                    for _ in 0..ROUND_TRIPS_PER_PAIR {
                        transport.call(&to, ping(), Duration::from_secs(10)).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// pessimist's transport, one-way `send` both ways (how Raft peers talk): each side reads its
    /// inbox and sends the answer back as a message of its own.
    async fn transport_one_way_ping_pong(faults: LinkFaults) {
        let handle = madsim::runtime::Handle::current();
        let mut addresses: std::collections::BTreeMap<String, SocketAddr> =
            (0..SERVERS).map(|index| (format!("server-{index}"), server_address(index))).collect();
        for client in 0..CLIENTS {
            addresses.insert(format!("client-{client}"), SocketAddr::new(client_ip(client), PORT));
        }
        let book = AddressBook::new(addresses);
        for index in 0..SERVERS {
            let (book, faults) = (book.clone(), faults.clone());
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let name = format!("server-{index}");
                    let (transport, mut inbox) = Transport::<Ping>::bind(
                        &name,
                        book,
                        TransportOptions::default(),
                        faults,
                        rng_for(1, &name),
                    )
                    .await
                    .unwrap();
                    while let Some(message) = inbox.recv().await {
                        transport.send(&message.from, message.body).await.unwrap();
                    }
                });
        }
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (book, faults) = (book.clone(), faults.clone());
            let node =
                handle.create_node().name(format!("client-{client}")).ip(client_ip(client)).build();
            tasks.push(node.spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let name = format!("client-{client}");
                let (transport, mut inbox) = Transport::<Ping>::bind(
                    &name,
                    book,
                    TransportOptions::default(),
                    faults,
                    rng_for(1, &name),
                )
                .await
                .unwrap();
                // One exchange in flight per server, as in the other two workloads.
                for server in 0..SERVERS {
                    transport.send(&format!("server-{server}"), ping()).await.unwrap();
                }
                let mut answers = 0;
                while answers < ROUND_TRIPS_PER_PAIR * SERVERS as u64 {
                    let message = inbox.recv().await.unwrap();
                    answers += 1;
                    if answers <= (ROUND_TRIPS_PER_PAIR - 1) * SERVERS as u64 {
                        transport.send(&message.from, message.body).await.unwrap();
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// Messages per wall-second of one run (two messages per round trip).
    fn measure<F: std::future::Future<Output = ()>>(seed: u64, body: impl FnOnce() -> F) -> f64 {
        let encoded = postcard::to_stdvec(&ping()).unwrap().len();
        assert!(
            encoded + 3 >= PAYLOAD_BYTES,
            "the transport's message ({encoded} bytes) is no smaller than the raw one"
        );
        let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
        // Outside the runtime, `Instant` reads the real clock.
        let started = Instant::now();
        runtime.block_on(body());
        let messages = 2 * ROUND_TRIPS_PER_PAIR * (SERVERS * CLIENTS) as u64;
        messages as f64 / started.elapsed().as_secs_f64()
    }

    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    pub fn main() {
        // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run once, small.
        let repetitions = if std::env::args().any(|arg| arg == "--bench") { 5 } else { 1 };
        let mut raw = Vec::new();
        let mut idle_layer = Vec::new();
        let mut busy_layer = Vec::new();
        let mut one_way = Vec::new();
        for seed in 0..repetitions {
            raw.push(measure(seed, raw_ping_pong));
            idle_layer.push(measure(seed, || transport_ping_pong(LinkFaults::default())));
            // Rules on links this workload does not use: every frame pays the table lookup.
            let busy = LinkFaults::default();
            busy.set_link(
                "elsewhere-a",
                "elsewhere-b",
                LinkRule { delay_ms: 5, ..LinkRule::default() },
            );
            busy_layer.push(measure(seed, || transport_ping_pong(busy.clone())));
            one_way.push(measure(seed, || transport_one_way_ping_pong(LinkFaults::default())));
        }
        let (raw, idle_layer, busy_layer, one_way) =
            (median(raw), median(idle_layer), median(busy_layer), median(one_way));
        println!("ping-pong, {} nodes, {} round trips, {PAYLOAD_BYTES}-byte payloads, median of {repetitions}:", SERVERS + CLIENTS, ROUND_TRIPS_PER_PAIR * (SERVERS * CLIENTS) as u64);
        println!("  raw madsim TCP:                         {:>10.0} messages/s", raw);
        println!(
            "  pessimist transport, fault layer idle:  {:>10.0} messages/s  ratio {:.2}",
            idle_layer,
            idle_layer / raw
        );
        println!(
            "  pessimist transport, rules elsewhere:   {:>10.0} messages/s  ratio {:.2}",
            busy_layer,
            busy_layer / raw
        );
        println!(
            "  pessimist transport, one-way sends:     {:>10.0} messages/s  ratio {:.2}",
            one_way,
            one_way / raw
        );
        let worst = idle_layer.min(busy_layer) / raw;
        println!("  target ratio >= 0.70: {}", if worst >= 0.7 { "met" } else { "MISSED" });
    }
}

fn main() {
    #[cfg(madsim)]
    simulated::main();
    #[cfg(not(madsim))]
    eprintln!("the transport benchmark compares against madsim's TCP: run it in the simulation build (the default)");
}
