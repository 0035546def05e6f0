//! Each fault of issue 3 on its own, at a chosen moment.

use super::cloud::{free_port, BinaryCloud, Cloud};
use super::proxy::Proxy;
use super::support::*;
use crate::harness::{
    close_of, eventually, fast_simulator, start_terminal_at, Opts, RawDevice, TestApp, PATIENCE,
};
use cloud::domain::lifecycle::{CompletedBy, Phase};
use pos::PosClient;
use protocol::pos_api::DELAYED_TEXT;
use protocol::{DeviceId, TransactionId};
use std::time::Duration;
use terminal::journal::{EntryState, JournalEntry};
use terminal::{SimulatorConfig, TerminalEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn sim(step_ms: u64, slow_ms: u64) -> SimulatorConfig {
    SimulatorConfig {
        step_delay: Duration::from_millis(step_ms),
        slow: Duration::from_millis(slow_ms),
    }
}

fn is_for(id: TransactionId) -> impl Fn(&TerminalEvent) -> bool {
    move |e| match e {
        TerminalEvent::TransactionReceived { transaction_id, .. }
        | TerminalEvent::Prompt { transaction_id, .. }
        | TerminalEvent::Acknowledged { transaction_id } => *transaction_id == id,
        TerminalEvent::Completed { result } => result.transaction_id == id,
        _ => false,
    }
}

async fn phase(cloud: &TestApp, id: TransactionId) -> Phase {
    cloud.engine.transaction(&id).await.unwrap().unwrap().phase
}

// ---------------------------------------------------------------------------------------------
// The proxy itself.

async fn read_some(s: &mut TcpStream, d: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(d, s.read(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Ok(Err(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn proxy_forwards_cuts_stalls_blackholes_and_resumes() {
    // An echo server upstream.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (mut s, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(upstream).await;
    let short = Duration::from_millis(150);

    let mut a = TcpStream::connect(proxy.addr).await.unwrap();
    a.write_all(b"ping").await.unwrap();
    assert_eq!(read_some(&mut a, PATIENCE).await.unwrap(), b"ping");

    // Stall: nothing comes back, the socket stays open; resume delivers what was held.
    assert_eq!(proxy.stall(), 1);
    a.write_all(b"held").await.unwrap();
    assert_eq!(
        read_some(&mut a, short).await,
        None,
        "stalled yet forwarded"
    );
    // A new connection is not stalled.
    let mut b = TcpStream::connect(proxy.addr).await.unwrap();
    b.write_all(b"fresh").await.unwrap();
    assert_eq!(read_some(&mut b, PATIENCE).await.unwrap(), b"fresh");
    proxy.resume();
    assert_eq!(read_some(&mut a, PATIENCE).await.unwrap(), b"held");

    // Cut: every connection is closed at once.
    assert_eq!(proxy.cut(), 2);
    assert_eq!(read_some(&mut a, PATIENCE).await.unwrap(), b"");
    assert_eq!(read_some(&mut b, PATIENCE).await.unwrap(), b"");
    eventually("cut connections to leave the table", || async {
        (proxy.open_connections() == 0).then_some(())
    })
    .await;

    // Blackhole: accepted, never forwarded, closed on resume.
    proxy.blackhole();
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"lost").await.unwrap();
    assert_eq!(read_some(&mut c, short).await, None);
    proxy.resume();
    assert_eq!(read_some(&mut c, PATIENCE).await.unwrap(), b"");
    let mut d = TcpStream::connect(proxy.addr).await.unwrap();
    d.write_all(b"back").await.unwrap();
    assert_eq!(read_some(&mut d, PATIENCE).await.unwrap(), b"back");

    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.blackholed, stats.cut), (4, 1, 3));
    // Dropping the proxy ends its connections too.
    drop(proxy);
    assert_eq!(read_some(&mut d, PATIENCE).await.unwrap(), b"");
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// The device goes away after `start`.

#[tokio::test]
async fn device_dropped_after_start_is_delayed_then_completed_once() {
    let opts = Opts {
        delayed_after: Duration::from_millis(300),
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, sim(5, 1200), "dev-drop-started").await;
    let pos = rig.pos();
    let (id, url) = post(&pos, &rig.reg, 1053).await;
    // The first prompt comes after `Started` is journaled: the card is being read.
    rig.term
        .wait_for(|e| matches!(e, TerminalEvent::Prompt { .. }).then_some(()))
        .await;
    assert!(matches!(phase(&rig.cloud, id).await, Phase::Started { .. }));
    rig.proxy.blackhole();
    assert_eq!(rig.proxy.cut(), 1);

    let pending = poll(&pos, &url).await;
    assert!(!pending.is_completed(), "{pending:?}");
    // After `delayed_after`, the POS is told the transaction is late, not that it failed.
    let delayed = eventually("OK-DELAYED", || async {
        let env = poll(&pos, &url).await;
        assert!(!env.is_completed(), "completed while the device was away");
        (env.field("TransactionResult") == Some("OK-DELAYED")).then_some(env)
    })
    .await;
    assert_eq!(delayed.field("Result"), Some("DELAYED-TRANSACTION"));
    assert_eq!(delayed.field("ResultText"), Some(DELAYED_TEXT));

    // The payment finishes offline and is journaled; the cloud cannot know yet.
    let result = rig
        .term
        .wait_for(|e| match e {
            TerminalEvent::Completed { result } if result.transaction_id == id => {
                Some(result.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(
        journal_entry(&rig.term.journal, id).map(|e| e.state),
        Some(EntryState::Completed {
            result: result.clone()
        })
    );
    assert!(!poll(&pos, &url).await.is_completed());

    // Back: the result travels in `hello`, is stored once and acknowledged.
    rig.proxy.resume();
    let done = completed(&pos, &url).await;
    assert_eq!(done.field("TransactionResult"), Some("OK-ACCEPTED"));
    rig.term
        .wait_for(|e| {
            matches!(e, TerminalEvent::Acknowledged { transaction_id } if *transaction_id == id)
                .then_some(())
        })
        .await;
    let entry = journal_entry(&rig.term.journal, id);
    assert_matches_journal(&done, entry.as_ref(), "after reconnect");
    assert!(matches!(
        entry.map(|e| e.state),
        Some(EntryState::Acknowledged { .. })
    ));
    assert_eq!(poll(&pos, &url).await, done, "re-poll differs");
    let Phase::Completed(c) = phase(&rig.cloud, id).await else {
        panic!("not completed")
    };
    assert_eq!(c.by, CompletedBy::Device);
    // Once: no second result for it on the device.
    assert!(!drain(&mut rig.term)
        .iter()
        .any(|e| matches!(e, TerminalEvent::Completed { result } if result.transaction_id == id)));
}

// ---------------------------------------------------------------------------------------------
// The terminal is killed (or loses power) at every point of a transaction.

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the offer was accepted (nothing journaled yet).
    Accepted,
    /// At the first prompt (`Started` is journaled).
    Prompting,
    /// Right after the result was journaled (perhaps not yet sent).
    Journaled,
    /// After the ack (nothing left to do).
    Acknowledged,
    /// At a fixed delay after the POST.
    After(u64),
    /// The simulator's power failure (amount ending in 54): the agent stops by itself.
    PowerFailure,
}

#[tokio::test]
async fn terminal_killed_at_any_point_ends_as_its_journal_recorded() {
    let opts = Opts {
        accept_timeout: Duration::from_secs(1),
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, sim(15, 300), "dev-killed").await;
    let pos = rig.pos();
    use KillPoint::*;
    let points = [
        Accepted,
        Prompting,
        Journaled,
        Acknowledged,
        PowerFailure,
        After(0),
        After(5),
        After(15),
        After(30),
        After(50),
        After(80),
        After(120),
    ];
    let mut reversals = 0;
    for (i, point) in points.into_iter().enumerate() {
        let ctx = format!("kill point {point:?}");
        let cents = match point {
            PowerFailure => 1054,
            _ if i % 3 == 0 => 1053, // slow: widens the window between start and result
            _ => 1000 + 100 * i as u64,
        };
        drain(&mut rig.term);
        let (id, url) = post(&pos, &rig.reg, cents).await;
        let at = |want: fn(&TerminalEvent) -> bool| {
            let f = is_for(id);
            move |e: &TerminalEvent| (f(e) && want(e)).then_some(())
        };
        match point {
            Accepted => {
                rig.term
                    .wait_for(at(|e| {
                        matches!(e, TerminalEvent::TransactionReceived { .. })
                    }))
                    .await
            }
            Prompting => {
                rig.term
                    .wait_for(at(|e| matches!(e, TerminalEvent::Prompt { .. })))
                    .await
            }
            Journaled => {
                rig.term
                    .wait_for(at(|e| matches!(e, TerminalEvent::Completed { .. })))
                    .await
            }
            Acknowledged => {
                rig.term
                    .wait_for(at(|e| matches!(e, TerminalEvent::Acknowledged { .. })))
                    .await
            }
            After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            PowerFailure => {
                eventually("the power failure", || async {
                    rig.term.has_exited().then_some(())
                })
                .await;
            }
        }
        // What the device knows at the moment it dies decides what must come out.
        let before = journal_entry(&rig.term.journal, id);
        rig = kill_and_restart(rig).await;
        let done = completed(&pos, &url).await;
        let after = journal_entry(&rig.term.journal, id);
        assert_matches_journal(&done, after.as_ref(), &ctx);
        match before.as_ref().map(|e| &e.state) {
            Some(EntryState::Started) => {
                // Interrupted mid-payment: reversed, and said so.
                reversals += 1;
                assert_eq!(done.field("TransactionResult"), Some("CANCELLED"), "{ctx}");
                assert!(
                    done.field("ResultText")
                        .unwrap()
                        .to_lowercase()
                        .contains("reversed"),
                    "{ctx}: {done:?}"
                );
            }
            Some(EntryState::Completed { result } | EntryState::Acknowledged { result }) => {
                assert_eq!(
                    after.as_ref().and_then(|e| e.result()),
                    Some(result),
                    "{ctx}"
                );
            }
            None => {}
        }
        if matches!(point, PowerFailure) {
            assert!(before.is_some(), "{ctx}: started must be journaled");
        }
        assert_eq!(poll(&pos, &url).await, done, "{ctx}: re-poll differs");
    }
    assert!(
        reversals >= 2,
        "the kill points never hit a running payment"
    );
}

// ---------------------------------------------------------------------------------------------
// The device is offline or silent before `start`.

#[tokio::test]
async fn silent_device_fails_at_the_accept_deadline_and_never_runs_the_late_offer() {
    let accept_timeout = Duration::from_millis(600);
    let opts = Opts {
        accept_timeout,
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, fast_simulator(), "dev-silent").await;
    let pos = rig.pos();
    // The link goes half-open: the cloud still believes the device is there.
    assert_eq!(rig.proxy.stall(), 1);
    let (id, url) = post(&pos, &rig.reg, 1000).await;
    let done = completed(&pos, &url).await;
    assert_eq!(done.field("TransactionResult"), Some("CANCELLED"));
    assert_eq!(done.field("Result"), Some("FAILED-INTERFACE"));
    assert_eq!(
        done.field("ResultText"),
        Some("Device did not respond in time")
    );

    // The link recovers: the stale offer reaches the device, which accepts it too late.
    rig.proxy.resume();
    rig.term
        .wait_for(|e| {
            matches!(e, TerminalEvent::TransactionReceived { transaction_id, .. } if *transaction_id == id)
                .then_some(())
        })
        .await;
    // It was aborted, not started: the device is free for the next one and journaled nothing.
    let (next, next_url) = post(&pos, &rig.reg, 1100).await;
    let ok = completed(&pos, &next_url).await;
    assert_eq!(ok.field("TransactionResult"), Some("OK-ACCEPTED"));
    assert_eq!(
        journal_entry(&rig.term.journal, id),
        None,
        "the late offer ran"
    );
    assert!(journal_entry(&rig.term.journal, next).is_some());
    assert_eq!(poll(&pos, &url).await, done, "the failed outcome changed");
}

#[tokio::test]
async fn offline_device_fails_at_once() {
    let opts = Opts {
        accept_timeout: Duration::from_secs(5),
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, fast_simulator(), "dev-offline").await;
    let pos = rig.pos();
    let device = DeviceId::parse("dev-offline").unwrap();
    rig.proxy.blackhole();
    rig.proxy.cut();
    eventually("the cloud to notice the cut", || async {
        (!rig.cloud.engine.is_online(&device).await).then_some(())
    })
    .await;
    let (id, url) = post(&pos, &rig.reg, 1000).await;
    let done = completed(&pos, &url).await;
    assert_eq!(done.field("TransactionResult"), Some("CANCELLED"));
    assert_eq!(done.field("Result"), Some("FAILED-INTERFACE"));
    // At once: by the first decision, not at the accept deadline.
    assert_eq!(done.field("ResultText"), Some("Device is offline"));
    rig.proxy.resume();
    rig.term
        .wait_for(|e| matches!(e, TerminalEvent::Connected { .. }).then_some(()))
        .await;
    let (_, url2) = post(&pos, &rig.reg, 1200).await;
    assert_eq!(
        completed(&pos, &url2).await.field("TransactionResult"),
        Some("OK-ACCEPTED")
    );
    assert_eq!(journal_entry(&rig.term.journal, id), None);
}

#[tokio::test]
async fn stalled_then_cut_before_accept_fails_at_once() {
    let opts = Opts {
        accept_timeout: Duration::from_secs(5),
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, fast_simulator(), "dev-stall-cut").await;
    let pos = rig.pos();
    rig.proxy.stall();
    let (id, url) = post(&pos, &rig.reg, 1000).await;
    assert!(matches!(phase(&rig.cloud, id).await, Phase::Offered { .. }));
    rig.proxy.cut();
    let done = completed(&pos, &url).await;
    assert_eq!(done.field("Result"), Some("FAILED-INTERFACE"));
    // Ended by the disconnect, not at the accept deadline ("did not respond in time").
    assert_eq!(done.field("ResultText"), Some("Device is offline"));
    rig.term
        .wait_for(|e| matches!(e, TerminalEvent::Connected { .. }).then_some(()))
        .await;
    assert_eq!(journal_entry(&rig.term.journal, id), None);
}

// ---------------------------------------------------------------------------------------------
// A half-open connection replaced by a new one.

#[tokio::test]
async fn a_stalled_connection_is_replaced_by_the_newer_one() {
    // Heartbeats far longer than the test: only "newest wins" can end the old connection.
    let opts = Opts {
        accept_timeout: Duration::from_secs(5),
        heartbeat: Duration::from_secs(30),
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, fast_simulator(), "dev-half-open").await;
    let pos = rig.pos();
    rig.proxy.stall();
    let (id, url) = post(&pos, &rig.reg, 1000).await;
    // The offer is stuck in the old connection. The device (rebooted, or moved to another
    // network) connects again while the cloud still holds the old, half-open one.
    rig.term = restart_terminal(rig.term, &rig.proxy.base, rig.sim).await;
    // Approved: the new connection ran it (the accept deadline would have cancelled it, and
    // the heartbeat could not drop the old one within the test's patience).
    let done = completed(&pos, &url).await;
    assert_eq!(done.field("TransactionResult"), Some("OK-ACCEPTED"));
    assert_matches_journal(
        &done,
        journal_entry(&rig.term.journal, id).as_ref(),
        "new connection",
    );
    // The old connection is gone from the cloud: the device is still online through the new one.
    let device = DeviceId::parse("dev-half-open").unwrap();
    assert!(rig.cloud.engine.is_online(&device).await);
    rig.proxy.resume();
    let (_, url2) = post(&pos, &rig.reg, 1300).await;
    assert_eq!(
        completed(&pos, &url2).await.field("TransactionResult"),
        Some("OK-ACCEPTED")
    );
}

// ---------------------------------------------------------------------------------------------
// The cloud is killed and restarted.

#[tokio::test]
async fn cloud_killed_at_any_point_every_transaction_ends_as_the_device_recorded() {
    let opts = Opts {
        accept_timeout: Duration::from_secs(1),
        delayed_after: Duration::from_millis(300),
        ..Opts::default()
    };
    let mut rig = Rig::new(opts, sim(10, 300), "dev-cloud-kill").await;
    let pos = rig.pos();
    // (amount, delay after the POST before the kill)
    let points: [(u64, u64); 10] = [
        (1000, 0),
        (1100, 2),
        (1200, 8),
        (1300, 20),
        (1453, 40),
        (1553, 150),
        (1651, 25),
        (1752, 30),
        (1800, 60),
        (1900, 100),
    ];
    let mut by_device = 0;
    for (cents, delay) in points {
        let ctx = format!("cloud killed {delay} ms after a POST of {cents}");
        drain(&mut rig.term);
        let (id, url) = post(&pos, &rig.reg, cents).await;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        rig.cloud = rig.cloud.restart().await;
        let done = completed(&pos, &url).await;
        // Let the device settle (result acknowledged, or nothing to report) before comparing.
        eventually(
            &format!("{ctx}: the device's result acknowledged"),
            || async {
                let entry = journal_entry(&rig.term.journal, id);
                let acked = |e: JournalEntry| matches!(e.state, EntryState::Acknowledged { .. });
                entry.is_none_or(acked).then_some(())
            },
        )
        .await;
        let entry = journal_entry(&rig.term.journal, id);
        assert_matches_journal(&done, entry.as_ref(), &ctx);
        let Phase::Completed(c) = phase(&rig.cloud, id).await else {
            panic!("{ctx}: not completed in the store")
        };
        if entry.is_some() {
            assert_eq!(c.by, CompletedBy::Device, "{ctx}: {c:?}");
        } else {
            // Never started on the device: ended by the cloud, or by the device's "not
            // accepted" answer to a repeated start; either way nothing was charged.
            assert!(
                c.by == CompletedBy::Cloud || c.result_text.contains("Not accepted"),
                "{ctx}: {c:?}"
            );
        }
        by_device += usize::from(entry.is_some());
        assert_eq!(poll(&pos, &url).await, done, "{ctx}: re-poll differs");
        // The device is back before the next POST.
        let device = DeviceId::parse("dev-cloud-kill").unwrap();
        eventually("the device to reconnect", || async {
            rig.cloud.engine.is_online(&device).await.then_some(())
        })
        .await;
    }
    assert!(by_device >= 3, "the kills never hit a started transaction");
}

/// A process killed with `kill -9` sends no close frame and writes nothing more; the device
/// sees its connection drop (1006). `TestApp::kill` aborts only the server task: axum runs the
/// graceful-shutdown signal in a task of its own, so when the `TestApp` is dropped the
/// connection tasks still close gracefully ("server shutting down", 1001) and end the device's
/// pending offer in the store as "device offline", which a killed process would never do.

#[tokio::test]
async fn killed_cloud_drops_device_connections_without_a_word() {
    let cloud = Cloud::start(Opts::default()).await;
    let secret = cloud.enroll("dev-dropped").await;
    let mut d = RawDevice::connect(&cloud, "dev-dropped", &secret).await;
    let reg = d.pair(&cloud).await;
    let (_, env) = cloud
        .post_form("/POS/Transaction", &crate::harness::purchase(&reg, "100"))
        .await;
    let id: TransactionId = env["transactionId"].as_str().unwrap().parse().unwrap();
    let (dir, addr, opts) = cloud.kill().await;
    assert_eq!(close_of(&mut d.ws).await, (1006, String::new()));
    // Nothing was written after the kill: the offer is still an offer.
    let cloud = Cloud::start_in(dir, opts, Some(addr)).await;
    assert!(matches!(phase(&cloud, id).await, Phase::Offered { .. }));
}

/// The real binary, killed with SIGKILL mid-transaction and restarted on the same data.
#[tokio::test]
async fn binary_killed_with_sigkill_and_restarted_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let flags = [
        "--accept-timeout",
        "2s",
        "--delayed-after",
        "300ms",
        "--log",
        "warn",
    ];
    let bin = BinaryCloud::start(port, &data, &flags).await;
    let secret = bin.enroll("dev-bin").await;
    let journal = dir.path().join("dev-bin.journal");
    let sim = sim(5, 800);
    let mut term = start_terminal_at(&bin.base, "dev-bin", &secret, &journal, sim);
    let pos = PosClient::new(&bin.base).unwrap();
    let reg = pair(&pos, &mut term).await;

    // Completed before the kill: re-polls identically after it.
    let (_, url0) = post(&pos, &reg, 1000).await;
    let done0 = completed(&pos, &url0).await;

    // Killed while the device runs a slow payment: it finishes offline, reports after.
    let (id, url) = post(&pos, &reg, 1053).await;
    term.wait_for(|e| {
        matches!(e, TerminalEvent::Prompt { transaction_id, .. } if *transaction_id == id)
            .then_some(())
    })
    .await;
    bin.kill().await;
    term.wait_for(|e| {
        matches!(e, TerminalEvent::Completed { result } if result.transaction_id == id)
            .then_some(())
    })
    .await;
    let bin = BinaryCloud::start(port, &data, &flags).await;
    let done = completed(&pos, &url).await;
    assert_eq!(done.field("TransactionResult"), Some("OK-ACCEPTED"));
    assert_matches_journal(
        &done,
        journal_entry(&journal, id).as_ref(),
        "binary killed after start",
    );
    assert_eq!(poll(&pos, &url0).await, done0);

    // Killed right after the POST answered: the offer is a row, it ends one way or the other.
    term.wait_for(|e| matches!(e, TerminalEvent::Connected { .. }).then_some(()))
        .await;
    let (id2, url2) = post(&pos, &reg, 1100).await;
    bin.kill().await;
    let bin = BinaryCloud::start(port, &data, &flags).await;
    let done2 = completed(&pos, &url2).await;
    // A started entry must become a result (journaled before it is reported); none is fine.
    let entry = eventually("the device's journal to settle", || async {
        let entry = journal_entry(&journal, id2);
        let started = matches!(entry.as_ref().map(|e| &e.state), Some(EntryState::Started));
        (!started).then_some(entry)
    })
    .await;
    assert_matches_journal(&done2, entry.as_ref(), "binary killed after POST");
    term.stop().await;
    bin.kill().await;
}
