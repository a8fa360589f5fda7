//! Benchmark: messages per wall-second through raw madsim TCP and through pessimist's
//! transport (postcard framing, connection management, the link-fault layer consulted on
//! every frame, no fault injected), on the same ping-pong workload.
//!
//! Both sides move the same messages: the same count, over the same topology (two client
//! nodes, two server nodes, one exchange in flight per client-server pair), and raw TCP
//! carries, frame for frame, the bytes the transport's frames take. A reference row, raw TCP
//! that also encodes and decodes each message with postcard on every hop, shows what
//! serialization alone costs.
//!
//! Two traffics:
//! - **The queue's Raft traffic**: real raft-rs messages as the queue's replicas exchange them
//!   (`QueueMessage::Raft`, protobuf bytes carried as a byte string). A leader's heartbeats
//!   and appends, one in six carrying an `Enqueue` entry with a JPEG upload; the follower
//!   answers each, so one message in twelve is large, as in a default-suite run.
//! - **postcard's worst case**, a reference: a message of seven `u64`s near `u64::MAX / 3`,
//!   nine varint bytes each, where serialization costs the most.
//!
//! Every workload sends messages it already holds, as raw TCP writes frames it already holds:
//! the transport and the postcard reference encode a borrowed message, so no row pays for
//! building or copying a message before it is sent.
//!
//! The figures are information, not a target: the transport is kept plain (a reader task per
//! connection, a timer per call) and an optimisation stays only where it moves the whole
//! suite's seeds per hour (`pessimist sweep`), which this benchmark does not measure.
//! Wall-clock rates on a shared machine vary from run to run, and interference only ever adds
//! time: each row reports its best run of 9 (`cargo bench`) and the ratio of best runs; the
//! ratio of median runs is printed beside it.
//!
//! Run: `cargo bench -p pessimist-sim --bench transport`; name workloads after `--` to run
//! only those (for profiling), e.g. `-- call`.

// madsim's runtime and simulated TCP exist only in the simulation build (the default).
#[cfg(madsim)]
mod simulated {

    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use madsim::runtime::Runtime;
    use pessimist_core::api::JobSpec;
    use pessimist_core::queue::machine::Command;
    use pessimist_core::queue::QueueMessage;
    use pessimist_core::replica::{Proposal, ProposalOrigin, ReplicaMessage, Stamped};
    use pessimist_core::resize::pills;
    use pessimist_core::seams::net::{
        AddressBook, LinkFaults, LinkRule, Message, Transport, TransportOptions,
    };
    use pessimist_core::seams::rng::rng_for;
    use protobuf::Message as _;
    use raft::eraftpb::{Entry, Message as RaftMessage, MessageType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SERVERS: usize = 2;
    const CLIENTS: usize = 2;
    const ROUND_TRIPS_PER_PAIR: u64 = 50_000;
    const PORT: u16 = 7000;

    /// postcard's worst case: seven `u64`s whose varints take nine bytes each.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
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

    /// The messages a workload moves: exchanges (a request and its answer), taken in turn.
    struct Traffic<M> {
        exchanges: Vec<(M, M)>,
    }

    impl<M> Traffic<M> {
        fn request(&self, round: u64) -> &M {
            &self.exchanges[round as usize % self.exchanges.len()].0
        }

        fn answer(&self, round: u64) -> &M {
            &self.exchanges[round as usize % self.exchanges.len()].1
        }
    }

    fn worst_case() -> Arc<Traffic<Ping>> {
        Arc::new(Traffic { exchanges: vec![(ping(), ping())] })
    }

    /// A raft-rs message between the queue's replicas, as the queue sends it.
    fn raft(message: RaftMessage) -> QueueMessage {
        ReplicaMessage::Raft(message.write_to_bytes().expect("protobuf encodes"))
    }

    /// A leader (node 1, term 3) replicating to a follower (node 2), six exchanges per cycle:
    /// an append carrying one `Enqueue` of a 96x72 JPEG upload, then heartbeats and empty appends
    /// (commit advances), each answered as raft-rs answers it.
    fn queue_raft() -> Arc<Traffic<QueueMessage>> {
        let (term, first) = (3, 41_000);
        let header = |kind: MessageType, index: u64| {
            let mut message = RaftMessage::default();
            message.set_msg_type(kind);
            (message.from, message.to, message.term) = (1, 2, term);
            (message.index, message.log_term, message.commit) = (index, term, index);
            message
        };
        let answer = |kind: MessageType, index: u64| {
            let mut message = header(kind, index);
            (message.from, message.to) = (2, 1);
            message
        };
        let image = pills::photo_like_jpeg(&mut rng_for(1, "image"), 96, 72, 85);
        let spec = JobSpec { account: "acct-7".into(), max_width: 64, max_height: 64, image };
        let proposal = Proposal {
            origin: ProposalOrigin { node: 1, incarnation: 2, seq: 1_733 },
            stamped: Stamped {
                now_ms: 1_764_000_000_000,
                command: Command::Enqueue {
                    key: "acct-7/upload-1733".into(),
                    payload: spec.encode(),
                },
            },
        };
        let mut entry = Entry::default();
        (entry.term, entry.index) = (term, first + 1);
        entry.data = postcard::to_stdvec(&proposal).expect("postcard encodes").into();
        let mut append = header(MessageType::MsgAppend, first);
        append.entries.push(entry);
        let mut exchanges =
            vec![(raft(append), raft(answer(MessageType::MsgAppendResponse, first + 1)))];
        for step in 1..6 {
            let index = first + 1 + step / 2;
            exchanges.push(if step % 2 == 1 {
                (
                    raft(header(MessageType::MsgHeartbeat, index)),
                    raft(answer(MessageType::MsgHeartbeatResponse, index)),
                )
            } else {
                (
                    raft(header(MessageType::MsgAppend, index)),
                    raft(answer(MessageType::MsgAppendResponse, index)),
                )
            });
        }
        Arc::new(Traffic { exchanges })
    }

    fn server_address(index: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1)), PORT)
    }

    fn client_ip(index: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, index as u8 + 1))
    }

    /// What a transport frame holds after its length prefix, in the same postcard encoding:
    /// the variant index of `Wire::Request` (2) or `Wire::Reply` (3), the call id, the message.
    type FrameShape<M> = (u32, u64, M);

    const REQUEST: u32 = 2;
    const REPLY: u32 = 3;

    /// The raw frames: each request and answer as the transport frames it, with the largest
    /// call id the workload reaches, so raw TCP carries no fewer bytes than the transport.
    fn raw_frames<M: Message>(traffic: &Traffic<M>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let frame = |variant: u32, message: &M| {
            let mut buffer = Vec::new();
            encode_frame(&(variant, ROUND_TRIPS_PER_PAIR, message), &mut buffer);
            buffer
        };
        traffic
            .exchanges
            .iter()
            .map(|(request, answer)| (frame(REQUEST, request), frame(REPLY, answer)))
            .collect()
    }

    /// Reads one length-prefixed frame into `buffer`, which grows to the largest frame once
    /// and is not cleared between frames; returns the frame's length.
    async fn read_raw(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.ok()?;
        let length = u32::from_be_bytes(prefix) as usize;
        if buffer.len() < length {
            buffer.resize(length, 0);
        }
        stream.read_exact(&mut buffer[..length]).await.ok()?;
        Some(length)
    }

    /// Raw madsim TCP: the client writes each request's frame and flushes; the server reads a
    /// frame and answers with the exchange's answer frame.
    async fn raw_ping_pong<M: Message>(traffic: Arc<Traffic<M>>) {
        let frames = Arc::new(raw_frames(&traffic));
        let handle = madsim::runtime::Handle::current();
        for index in 0..SERVERS {
            let frames = frames.clone();
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let listener = TcpListener::bind(server_address(index)).await.unwrap();
                    loop {
                        let (mut stream, _) = listener.accept().await.unwrap();
                        let frames = frames.clone();
                        tokio::spawn(async move {
                            let mut buffer = Vec::new();
                            let mut round = 0;
                            while read_raw(&mut stream, &mut buffer).await.is_some() {
                                stream.write_all(&frames[round % frames.len()].1).await.unwrap();
                                stream.flush().await.unwrap();
                                round += 1;
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
                let frames = frames.clone();
                tasks.push(node.spawn(async move {
                    let mut stream = TcpStream::connect(server_address(server)).await.unwrap();
                    let mut buffer = Vec::new();
                    for round in 0..ROUND_TRIPS_PER_PAIR as usize {
                        stream.write_all(&frames[round % frames.len()].0).await.unwrap();
                        stream.flush().await.unwrap();
                        read_raw(&mut stream, &mut buffer).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// Appends one length-prefixed postcard frame to `buffer`, encoding a borrowed message as
    /// the transport does.
    fn encode_frame<M: Message>(message: &FrameShape<&M>, buffer: &mut Vec<u8>) {
        buffer.clear();
        buffer.extend_from_slice(&[0; 4]);
        postcard::serialize_with_flavor(message, AppendFlavor(buffer)).expect("encodes");
        let length = (buffer.len() - 4) as u32;
        buffer[..4].copy_from_slice(&length.to_be_bytes());
    }

    /// postcard output appended to a buffer, as the transport encodes (postcard's own
    /// `to_extend` goes through `Extend` one byte at a time).
    struct AppendFlavor<'a>(&'a mut Vec<u8>);

    impl postcard::ser_flavors::Flavor for AppendFlavor<'_> {
        type Output = ();

        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }

        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.0.push(data);
            Ok(())
        }

        fn finalize(self) -> postcard::Result<()> {
            Ok(())
        }
    }

    /// Reads one length-prefixed postcard frame into `buffer` and decodes it.
    async fn read_frame<M: Message>(
        stream: &mut TcpStream,
        buffer: &mut Vec<u8>,
    ) -> Option<FrameShape<M>> {
        let length = read_raw(stream, buffer).await?;
        Some(postcard::from_bytes(&buffer[..length]).expect("decodes"))
    }

    /// Reference, not a target: raw madsim TCP that encodes each message with postcard before
    /// each write and decodes it after each read (buffers reused), as the transport must.
    async fn raw_postcard_ping_pong<M: Message + Sync>(traffic: Arc<Traffic<M>>) {
        let handle = madsim::runtime::Handle::current();
        for index in 0..SERVERS {
            let traffic = traffic.clone();
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let listener = TcpListener::bind(server_address(index)).await.unwrap();
                    loop {
                        let (mut stream, _) = listener.accept().await.unwrap();
                        let traffic = traffic.clone();
                        tokio::spawn(async move {
                            let (mut input, mut output) = (Vec::new(), Vec::new());
                            let mut round = 0;
                            while let Some((_, id, _)) =
                                read_frame::<M>(&mut stream, &mut input).await
                            {
                                let answer = (REPLY, id, traffic.answer(round));
                                encode_frame(&answer, &mut output);
                                stream.write_all(&output).await.unwrap();
                                stream.flush().await.unwrap();
                                round += 1;
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
                let traffic = traffic.clone();
                tasks.push(node.spawn(async move {
                    let mut stream = TcpStream::connect(server_address(server)).await.unwrap();
                    let (mut input, mut output) = (Vec::new(), Vec::new());
                    for round in 0..ROUND_TRIPS_PER_PAIR {
                        let request = (REQUEST, round + 1, traffic.request(round));
                        encode_frame(&request, &mut output);
                        stream.write_all(&output).await.unwrap();
                        stream.flush().await.unwrap();
                        read_frame::<M>(&mut stream, &mut input).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// Exchanges so far per sender, for a loop that serves several senders. Raw TCP's servers
    /// count in a local variable, one task per connection; this bookkeeping should cost the
    /// transport's side no more than that, so a sender is found by the address of its name
    /// among all senders first (the transport shares one `Arc<str>` among a connection's
    /// messages), and by the name itself only when that misses.
    #[derive(Default)]
    struct Rounds(Vec<(Arc<str>, u64)>);

    impl Rounds {
        fn of(&mut self, from: &Arc<str>) -> &mut u64 {
            let same = |(name, _): &(Arc<str>, u64)| Arc::ptr_eq(name, from);
            let equal = |(name, _): &(Arc<str>, u64)| **name == **from;
            let known = self.0.iter().position(same).or_else(|| self.0.iter().position(equal));
            let at = match known {
                Some(at) => at,
                None => {
                    self.0.push((from.clone(), 0));
                    self.0.len() - 1
                }
            };
            &mut self.0[at].1
        }
    }

    /// pessimist's transport: `call` and `reply`, with the fault layer consulted on every frame.
    /// The server answers each sender's requests in turn with the exchanges' answers.
    async fn transport_ping_pong<M: Message + Sync>(traffic: Arc<Traffic<M>>, faults: LinkFaults) {
        let handle = madsim::runtime::Handle::current();
        let book = AddressBook::new(
            (0..SERVERS).map(|index| (format!("server-{index}"), server_address(index))).collect(),
        );
        for index in 0..SERVERS {
            let (book, faults, traffic) = (book.clone(), faults.clone(), traffic.clone());
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let name = format!("server-{index}");
                    let (transport, mut inbox) = Transport::<M>::bind(
                        &name,
                        book,
                        TransportOptions::default(),
                        faults,
                        rng_for(1, &name),
                    )
                    .await
                    .unwrap();
                    let mut rounds = Rounds::default();
                    while let Some(request) = inbox.recv().await {
                        let round = rounds.of(request.from());
                        let answer = traffic.answer(*round);
                        *round += 1;
                        transport.reply(&request, answer).await.unwrap();
                    }
                });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let node =
                handle.create_node().name(format!("client-{client}")).ip(client_ip(client)).build();
            for server in 0..SERVERS {
                let (book, faults, traffic) = (book.clone(), faults.clone(), traffic.clone());
                tasks.push(node.spawn(async move {
                    let name = format!("client-{client}-{server}");
                    let (transport, _inbox) = Transport::<M>::unbound(
                        &name,
                        book,
                        TransportOptions::default(),
                        faults,
                        rng_for(1, &name),
                    );
                    let to = format!("server-{server}");
                    for round in 0..ROUND_TRIPS_PER_PAIR {
                        let request = traffic.request(round);
                        transport.call(&to, request, Duration::from_secs(10)).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// pessimist's transport, one-way `send` both ways (how Raft peers talk): the client sends
    /// each request as a message of its own, the server sends the answer back the same way.
    async fn transport_one_way_ping_pong<M: Message + Sync>(
        traffic: Arc<Traffic<M>>,
        faults: LinkFaults,
    ) {
        let handle = madsim::runtime::Handle::current();
        let mut addresses: BTreeMap<String, SocketAddr> =
            (0..SERVERS).map(|index| (format!("server-{index}"), server_address(index))).collect();
        for client in 0..CLIENTS {
            addresses.insert(format!("client-{client}"), SocketAddr::new(client_ip(client), PORT));
        }
        let book = AddressBook::new(addresses);
        for index in 0..SERVERS {
            let (book, faults, traffic) = (book.clone(), faults.clone(), traffic.clone());
            handle
                .create_node()
                .name(format!("server-{index}"))
                .ip(server_address(index).ip())
                .build()
                .spawn(async move {
                    let name = format!("server-{index}");
                    let (transport, mut inbox) = Transport::<M>::bind(
                        &name,
                        book,
                        TransportOptions::default(),
                        faults,
                        rng_for(1, &name),
                    )
                    .await
                    .unwrap();
                    let mut rounds = Rounds::default();
                    while let Some(message) = inbox.recv().await {
                        let round = rounds.of(message.from());
                        let answer = traffic.answer(*round);
                        *round += 1;
                        transport.send(message.from(), answer).await.unwrap();
                    }
                });
        }
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (book, faults, traffic) = (book.clone(), faults.clone(), traffic.clone());
            let node =
                handle.create_node().name(format!("client-{client}")).ip(client_ip(client)).build();
            tasks.push(node.spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let name = format!("client-{client}");
                let (transport, mut inbox) = Transport::<M>::bind(
                    &name,
                    book,
                    TransportOptions::default(),
                    faults,
                    rng_for(1, &name),
                )
                .await
                .unwrap();
                // One exchange in flight per server, as in the other workloads.
                for server in 0..SERVERS {
                    transport.send(&format!("server-{server}"), traffic.request(0)).await.unwrap();
                }
                let mut rounds = Rounds::default();
                let mut answers = 0;
                while answers < ROUND_TRIPS_PER_PAIR * SERVERS as u64 {
                    let message = inbox.recv().await.unwrap();
                    answers += 1;
                    let round = rounds.of(message.from());
                    *round += 1;
                    if *round < ROUND_TRIPS_PER_PAIR {
                        let request = traffic.request(*round);
                        transport.send(message.from(), request).await.unwrap();
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

    /// The workloads, by the name that selects them, with their label. Each traffic's first
    /// row is its baseline, raw madsim TCP.
    const WORKLOADS: [(&str, &str); 8] = [
        ("raw", "queue Raft traffic: raw madsim TCP"),
        ("raw-postcard", "reference: raw TCP + postcard per hop"),
        ("call", "pessimist transport, fault layer idle"),
        ("rules-elsewhere", "pessimist transport, rules elsewhere"),
        ("one-way", "pessimist transport, one-way sends"),
        ("worst-raw", "postcard's worst case: raw madsim TCP"),
        ("worst-raw-postcard", "reference: raw TCP + postcard per hop"),
        ("worst-call", "pessimist transport, fault layer idle"),
    ];

    /// Rules on links the workloads do not use: every frame pays the table lookup.
    fn rules_elsewhere() -> LinkFaults {
        let busy = LinkFaults::default();
        let rule = LinkRule { delay_ms: 5, ..LinkRule::default() };
        busy.set_link("elsewhere-a", "elsewhere-b", rule);
        busy
    }

    fn run(workload: &str, seed: u64) -> f64 {
        let idle = LinkFaults::default;
        match workload {
            "raw" => measure(seed, || raw_ping_pong(queue_raft())),
            "raw-postcard" => measure(seed, || raw_postcard_ping_pong(queue_raft())),
            "call" => measure(seed, || transport_ping_pong(queue_raft(), idle())),
            "rules-elsewhere" => {
                measure(seed, || transport_ping_pong(queue_raft(), rules_elsewhere()))
            }
            "one-way" => measure(seed, || transport_one_way_ping_pong(queue_raft(), idle())),
            "worst-raw" => measure(seed, || raw_ping_pong(worst_case())),
            "worst-raw-postcard" => measure(seed, || raw_postcard_ping_pong(worst_case())),
            "worst-call" => measure(seed, || transport_ping_pong(worst_case(), idle())),
            other => unreachable!("no workload {other}"),
        }
    }

    pub fn main() {
        // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run once.
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let repetitions =
            if arguments.iter().any(|argument| argument == "--bench") { 9 } else { 1 };
        let chosen: Vec<&str> = arguments
            .iter()
            .filter(|argument| !argument.starts_with('-'))
            .map(String::as_str)
            .collect();
        for name in &chosen {
            assert!(WORKLOADS.iter().any(|(known, ..)| known == name), "no workload {name:?}");
        }
        let workloads: Vec<(&str, &str)> = WORKLOADS
            .into_iter()
            .filter(|(name, ..)| chosen.is_empty() || chosen.contains(name))
            .collect();
        // Interleaved, so that a change in the machine's load hits every workload alike.
        let mut rates = vec![Vec::new(); workloads.len()];
        for seed in 0..repetitions {
            for ((name, ..), rates) in workloads.iter().zip(&mut rates) {
                rates.push(run(name, seed));
            }
        }
        let frames = |frames: Vec<(Vec<u8>, Vec<u8>)>| {
            let lengths: Vec<usize> =
                frames.iter().flat_map(|(request, answer)| [request.len(), answer.len()]).collect();
            let (least, most) = (lengths.iter().min(), lengths.iter().max());
            let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
            format!("{}-{} bytes, mean {mean:.0}", least.unwrap_or(&0), most.unwrap_or(&0))
        };
        println!(
            "ping-pong, {} nodes, {} round trips, best and median of {repetitions}; frames: queue \
             Raft traffic {}, postcard's worst case {}",
            SERVERS + CLIENTS,
            ROUND_TRIPS_PER_PAIR * (SERVERS * CLIENTS) as u64,
            frames(raw_frames(&queue_raft())),
            frames(raw_frames(&worst_case())),
        );
        let (best, typical): (Vec<f64>, Vec<f64>) = rates
            .iter()
            .map(|rates| (rates.iter().copied().fold(0.0, f64::max), median(rates.clone())))
            .unzip();
        let rate_of = |wanted: &str| {
            workloads
                .iter()
                .position(|(name, ..)| *name == wanted)
                .map(|at| (best[at], typical[at]))
        };
        for (at, (name, label)) in workloads.iter().enumerate() {
            let label = format!("{label}:");
            let (rate, typical) = (best[at], typical[at]);
            let baseline = if name.starts_with("worst-") { "worst-raw" } else { "raw" };
            match rate_of(baseline) {
                Some((raw, raw_typical)) if *name != baseline => {
                    let ratio = rate / raw;
                    println!(
                        "  {label:<42} {rate:>10.0} messages/s  ratio {ratio:.2}  (median {:.2})",
                        typical / raw_typical
                    );
                }
                _ => println!("  {label:<42} {rate:>10.0} messages/s  (median {typical:.0})"),
            }
        }
    }
}

fn main() {
    #[cfg(madsim)]
    simulated::main();
    #[cfg(not(madsim))]
    eprintln!("the transport benchmark compares against madsim's TCP: run it in the simulation build (the default)");
}
