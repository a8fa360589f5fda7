//! Tests of the transport: framing, link rules, the connection's invariants, and calls
//! between simulated nodes.

use std::pin::Pin;
use std::task::{Context, Poll};

use rand::SeedableRng;
use tokio::io::AsyncWrite;

use super::conn::Connection;
use super::*;

#[test]
fn healthy_rule_passes_and_drop_rule_drops() {
    let mut rng = SeededRng::seed_from_u64(1);
    assert_eq!(LinkRule::default().judge(&mut rng), Verdict::Pass);
    let dropping = LinkRule { drop_probability: 1.0, ..LinkRule::default() };
    assert_eq!(dropping.judge(&mut rng), Verdict::Drop);
    let delaying = LinkRule { delay_ms: 30, duplicate_probability: 1.0, ..LinkRule::default() };
    assert_eq!(
        delaying.judge(&mut rng),
        Verdict::Deliver { after: Duration::from_millis(30), copies: 2 }
    );
}

#[test]
fn link_rules_merge_and_clear() {
    let faults = LinkFaults::default();
    assert_eq!(faults.rule("a", "b"), None);
    faults.set_every_link(LinkRule { delay_ms: 5, ..LinkRule::default() });
    let rule = LinkRule { delay_ms: 7, drop_probability: 0.5, ..LinkRule::default() };
    faults.set_link("a", "b", rule);
    let merged = faults.rule("a", "b").unwrap();
    assert_eq!((merged.delay_ms, merged.drop_probability), (12, 0.5));
    assert_eq!(faults.rule("b", "a").unwrap().delay_ms, 5);
    faults.clear_every_link();
    assert_eq!(faults.rule("b", "a"), None);
    assert_eq!(faults.rule("a", "b").unwrap().delay_ms, 7);
    faults.clear_link("a", "b");
    assert_eq!(faults.rule("a", "b"), None);
    assert!(faults.is_healed(), "no rule left");
    faults.set_link("a", "b", LinkRule { delay_ms: 1, ..LinkRule::default() });
    assert!(!faults.is_healed());
    faults.heal();
    assert_eq!(faults.rule("a", "b"), None);
}

#[test]
fn judging_tallies_each_link_by_node_and_healing_keeps_the_tallies() {
    let faults = LinkFaults::default();
    let rng = std::sync::Mutex::new(SeededRng::seed_from_u64(1));
    // No rule: every frame passes and is counted.
    assert_eq!(faults.judge("a", "b", &rng), Verdict::Pass);
    // A node's rule applies to every transport of the node (`a/queue` is node a's).
    faults.set_link("a", "b", LinkRule { delay_ms: 3, ..LinkRule::default() });
    faults.set_every_link(LinkRule { duplicate_probability: 1.0, ..LinkRule::default() });
    let delayed = Verdict::Deliver { after: Duration::from_millis(3), copies: 2 };
    assert_eq!(faults.judge("a/queue", "b", &rng), delayed);
    faults.set_every_link(LinkRule { drop_probability: 1.0, ..LinkRule::default() });
    assert_eq!(faults.judge("b", "a/queue", &rng), Verdict::Drop);
    faults.heal();
    let tallies = faults.tallies();
    let a_b = LinkTally { sent: 2, delayed: 1, duplicated: 1, ..LinkTally::default() };
    let b_a = LinkTally { sent: 1, dropped: 1, ..LinkTally::default() };
    assert_eq!(tallies[&("a".to_string(), "b".to_string())], a_b);
    assert_eq!(tallies[&("b".to_string(), "a".to_string())], b_a);
    assert_eq!(tallies.len(), 2);
    assert_eq!(a_b.since(&LinkTally { sent: 1, ..LinkTally::default() }).sent, 1);
}

/// A stream that gives at most `step` bytes per read, so frames arrive cut anywhere.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let taken = self.step.min(self.bytes.len()).min(buf.remaining());
        buf.put_slice(&self.bytes[..taken]);
        self.bytes = &self.bytes[taken..];
        Poll::Ready(Ok(()))
    }
}

fn frames(wires: &[Wire<&u64>]) -> Vec<u8> {
    wires.iter().flat_map(|wire| frame::encode(wire).expect("encodes")).collect()
}

/// Every frame read from `bytes`, given `step` bytes at a time.
fn read_all(bytes: &[u8], step: usize) -> Vec<Wire<u64>> {
    let mut stream = Trickle { bytes, step };
    let mut buffer = Vec::new();
    let read =
        std::iter::from_fn(|| futures::executor::block_on(frame::read(&mut stream, &mut buffer)));
    read.collect()
}

#[test]
fn frames_read_whole_however_the_stream_cuts_them() {
    let wires = [
        Wire::OneWay(&7),
        Wire::Request { id: 3, body: &u64::MAX },
        Wire::Reply { id: 3, body: &0 },
    ];
    let bytes = frames(&wires);
    let expected = vec![
        Wire::OneWay(7),
        Wire::Request { id: 3, body: u64::MAX },
        Wire::Reply { id: 3, body: 0 },
    ];
    for step in 1..=bytes.len() {
        assert_eq!(read_all(&bytes, step), expected, "{step} bytes per read");
    }
    // Cut short: the whole frames before the cut, then nothing.
    assert_eq!(read_all(&bytes[..bytes.len() - 1], 5), expected[..2]);
}

#[test]
fn a_stream_announcing_too_long_a_frame_or_garbage_is_read_no_further() {
    let mut bytes = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
    bytes.extend(frames(&[Wire::OneWay(&1)]));
    assert!(read_all(&bytes, 64).is_empty(), "nothing after an over-long length");
    let mut bytes = vec![0, 0, 0, 2, 0xff, 0xff]; // A frame that does not decode.
    bytes.extend(frames(&[Wire::OneWay(&1)]));
    assert!(read_all(&bytes, 64).is_empty(), "nothing after a frame that does not decode");
    assert_eq!(read_all(&frames(&[Wire::OneWay(&1)]), 64), [Wire::OneWay(1)], "a good one reads");
}

/// A writer that takes at most three bytes per write and refuses every other write and
/// flush at first, as a full socket buffer would; `fail` makes every write fail.
#[derive(Default)]
struct SlowStream {
    /// What the stream took, shared with the test.
    taken: Arc<Mutex<Vec<u8>>>,
    refuse_next: bool,
    fail: bool,
}

impl SlowStream {
    fn refuses(&mut self, cx: &mut Context<'_>) -> bool {
        self.refuse_next = !self.refuse_next;
        if !self.refuse_next {
            cx.waker().wake_by_ref(); // Writable again at once.
        }
        !self.refuse_next
    }
}

impl AsyncWrite for SlowStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.fail {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        if self.refuses(cx) {
            return Poll::Pending;
        }
        let taken = data.len().min(3);
        lock(&self.taken).extend_from_slice(&data[..taken]);
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.refuses(cx) {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn concurrent_writers_frames_go_out_whole_and_in_order() {
    let stream = SlowStream::default();
    let taken = stream.taken.clone();
    let connection = Connection::<u64, _>::new("peer".into(), stream);
    let writes = (0..6u64).map(|body| {
        let connection = connection.clone();
        async move { connection.write(&Wire::OneWay(&body)).await }
    });
    let written = futures::executor::block_on(futures::future::join_all(writes));
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    let wires = (0..6).map(Wire::OneWay).collect::<Vec<_>>();
    assert_eq!(read_all(&lock(&taken), 64), wires);
}

#[test]
fn a_writer_cut_mid_frame_breaks_the_connection_and_nothing_follows() {
    let stream = SlowStream::default();
    let taken = stream.taken.clone();
    let connection = Connection::<u64, _>::new("peer".into(), stream);
    let mut cut = Box::pin(connection.write(&Wire::OneWay(&u64::MAX)));
    let waker = futures::task::noop_waker();
    // Polled until part of the frame went out, then dropped.
    while lock(&taken).len() < 2 {
        assert!(cut.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    }
    drop(cut);
    let next = futures::executor::block_on(connection.write(&Wire::OneWay(&1)));
    assert!(matches!(next, Err(NetError::ConnectionLost { .. })), "{next:?}");
    assert!(!connection.is_alive() && connection.enter_call(1).is_none());
    assert!(lock(&taken).len() < 4 + 10, "only the cut frame's start went out");

    let failing =
        Connection::<u64, _>::new("peer".into(), SlowStream { fail: true, ..Default::default() });
    let mut pending = failing.enter_call(1).expect("open");
    let written = futures::executor::block_on(failing.write(&Wire::OneWay(&1)));
    assert!(matches!(written, Err(NetError::ConnectionLost { .. })));
    let reply = futures::executor::block_on(&mut { pending }.reply);
    assert!(reply.is_err(), "a failed write fails the calls waiting");
}

#[test]
fn replies_go_to_their_own_call_once_and_the_rest_to_the_inbox() {
    let connection = Connection::<u64, _>::new("peer".into(), SlowStream::default());
    let (one, two) = (connection.enter_call(1).unwrap(), connection.enter_call(2).unwrap());
    let three = connection.enter_call(3).unwrap();
    drop(three); // Timed out: its reply finds nobody.
    let bytes = frames(&[
        Wire::Reply { id: 2, body: &20 },
        Wire::Reply { id: 3, body: &30 },
        Wire::Reply { id: 1, body: &10 },
        Wire::Reply { id: 1, body: &11 }, // A duplicate.
        Wire::OneWay(&5),
        Wire::Request { id: 9, body: &6 },
    ]);
    let (inbox, mut messages) = mpsc::channel(8);
    let reading =
        connection.clone().read_until_end(Trickle { bytes: &bytes, step: 7 }, Vec::new(), inbox);
    futures::executor::block_on(reading);
    assert_eq!(futures::executor::block_on(&mut { one }.reply), Ok(10));
    assert_eq!(futures::executor::block_on(&mut { two }.reply), Ok(20));
    let first = messages.try_recv().expect("the one-way message");
    assert_eq!((first.body, first.wants_reply(), &**first.from()), (5, false, "peer"));
    let second = messages.try_recv().expect("the request");
    assert_eq!((second.body, second.wants_reply()), (6, true));
    assert!(messages.try_recv().is_err(), "replies never reach the inbox");
    assert!(!connection.is_alive() && connection.enter_call(4).is_none(), "the stream ended");
}

#[test]
#[should_panic(expected = "call id 1 reused")]
fn a_call_id_is_never_reused_on_a_connection() {
    let connection = Connection::<u64, _>::new("peer".into(), SlowStream::default());
    let _first = connection.enter_call(1);
    let _second = connection.enter_call(1);
}

/// Accepts that fail, timed on simulated time: the loop backs off, doubling, rather than
/// spin (an `accept` that fails at once, retried at once, would burn a core).
#[cfg(madsim)]
#[madsim::test]
async fn a_failing_accept_backs_off() {
    let options = TransportOptions::default();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let recorded = attempts.clone();
    let started = Instant::now();
    let accept = move || {
        lock(&recorded).push(started.elapsed());
        async { Err::<(), _>(std::io::Error::other("no file descriptor left")) }
    };
    let accepting = accept_with_backoff(accept, options, |()| unreachable!("never accepts"));
    let _ = tokio::time::timeout(Duration::from_millis(3000), accepting).await;
    let attempts_ms: Vec<u128> = lock(&attempts).iter().map(Duration::as_millis).collect();
    // 10, 20, 40, ... 640 ms apart, then a second at most.
    assert_eq!(attempts_ms, [0, 10, 30, 70, 150, 310, 630, 1270, 2270]);
}

/// Calls from a client node to a server node whose inbox task runs `serve`. (Simulation
/// only: the nodes, their addresses and the kill are madsim's.)
#[cfg(madsim)]
mod calls {
    use super::*;
    use crate::seams::rng::rng_for;
    use madsim::runtime::Handle;
    use std::net::{IpAddr, Ipv4Addr};

    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1));
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 1, 1));

    fn book() -> AddressBook {
        let server = ("server".to_string(), SocketAddr::new(SERVER, 7000));
        AddressBook::new([server, ("client".to_string(), SocketAddr::new(CLIENT, 7000))].into())
    }

    /// Starts the server node, its inbox handed to `serve`.
    async fn server<F, S>(serve: S) -> madsim::runtime::NodeHandle
    where
        S: FnOnce(Transport<u64>, Inbox<u64>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let node = Handle::current().create_node().name("server").ip(SERVER).build();
        node.spawn(async move {
            let rng = rng_for(1, "server");
            let options = TransportOptions::default();
            let bound =
                Transport::bind("server", book(), options, LinkFaults::default(), rng).await;
            let (transport, inbox) = bound.expect("binds");
            serve(transport, inbox).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        node
    }

    /// Runs `test` on a client node of its own (the test's own node has no address).
    async fn on_client<F: Future<Output = ()> + Send + 'static>(test: F) {
        let node = Handle::current().create_node().name("client").ip(CLIENT).build();
        node.spawn(test).await.expect("the test's task ends");
    }

    fn client(name: &str) -> Transport<u64> {
        let options = TransportOptions::default();
        Transport::unbound(name, book(), options, LinkFaults::default(), rng_for(1, name)).0
    }

    #[madsim::test]
    async fn concurrent_calls_each_get_their_own_reply() {
        // Eight requests in, answered in reverse order.
        server(|transport, mut inbox| async move {
            let mut requests = Vec::new();
            while requests.len() < 8 {
                requests.push(inbox.recv().await.expect("a request"));
            }
            for request in requests.iter().rev() {
                transport.reply(request, &(request.body * 10)).await.expect("replies");
            }
            std::future::pending::<()>().await;
        })
        .await;
        on_client(async move {
            let client = client("client");
            let calls = (0..8u64).map(|body| {
                let client = client.clone();
                async move { client.call("server", &body, Duration::from_secs(5)).await }
            });
            let replies = futures::future::join_all(calls).await;
            let replies: Vec<u64> =
                replies.into_iter().map(|reply| reply.expect("a reply")).collect();
            assert_eq!(replies, (0..8).map(|body| body * 10).collect::<Vec<_>>());
        })
        .await;
    }

    #[madsim::test]
    async fn one_way_messages_arrive_in_order_and_answers_come_back() {
        server(|transport, mut inbox| async move {
            let mut expected = 0;
            while let Some(message) = inbox.recv().await {
                assert_eq!(message.body, expected, "in the order sent");
                assert!(!message.wants_reply());
                expected += 1;
                if expected == 100 {
                    transport.send(message.from(), &expected).await.expect("answers");
                }
            }
        })
        .await;
        on_client(async move {
            let options = TransportOptions::default();
            let rng = rng_for(1, "client");
            let bound =
                Transport::<u64>::bind("client", book(), options, LinkFaults::default(), rng);
            let (client, mut inbox) = bound.await.expect("binds");
            for body in 0..100u64 {
                client.send("server", &body).await.expect("sent");
            }
            // The server answers on a connection it dials itself.
            let answer = inbox.recv().await.expect("the answer");
            assert_eq!((answer.body, &**answer.from()), (100, "server"));
        })
        .await;
    }

    #[madsim::test]
    async fn a_late_reply_times_out_and_confuses_no_later_call() {
        // Request 0 is answered after a second; the others at once.
        server(|transport, mut inbox| async move {
            while let Some(request) = inbox.recv().await {
                let transport = transport.clone();
                tokio::spawn(async move {
                    if request.body == 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    let _ = transport.reply(&request, &(request.body * 10)).await;
                });
            }
        })
        .await;
        on_client(async move {
            let client = client("client");
            let started = Instant::now();
            let late = client.call("server", &0, Duration::from_millis(300)).await;
            let waited = started.elapsed();
            assert!(
                matches!(late, Err(NetError::Timeout { after_ms: 300, .. })),
                "the late call times out: {late:?}"
            );
            assert!(
                waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
                "it times out when its timeout runs out, not later: {waited:?}"
            );
            assert_eq!(client.call("server", &2, Duration::from_secs(5)).await.unwrap(), 20);
            tokio::time::sleep(Duration::from_millis(1500)).await; // The late reply arrives.
            assert_eq!(client.call("server", &3, Duration::from_secs(5)).await.unwrap(), 30);
        })
        .await;
    }

    #[madsim::test]
    async fn a_call_to_a_killed_peer_fails_before_its_timeout_and_redials_after() {
        let server_node = server(|_transport, mut inbox| async move {
            while inbox.recv().await.is_some() {} // Never answers.
        })
        .await;
        on_client(async move {
            let client = client("client");
            let waiting = {
                let client = client.clone();
                tokio::spawn(
                    async move { client.call("server", &1, Duration::from_secs(30)).await },
                )
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let started = Instant::now();
            Handle::current().kill(server_node.id());
            let outcome = waiting.await.expect("the call's task ends");
            assert!(
                matches!(outcome, Err(NetError::ConnectionLost { .. })),
                "the call fails as lost: {outcome:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "long before its timeout");
            let refused = client.call("server", &1, Duration::from_secs(1)).await;
            assert!(matches!(refused, Err(NetError::Unreachable { .. })), "{refused:?}");
            let unknown = client.send("nobody", &1).await;
            assert_eq!(unknown, Err(NetError::UnknownPeer("nobody".into())));
        })
        .await;
    }
}
