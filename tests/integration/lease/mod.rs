//! The lease against a real PostgreSQL (`KEYWATCH_TEST_POSTGRES`, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`), each test in its own throw-away database.
//! All electors use ttl = 1.5 s: period ttl/3 = 500 ms, margin min(1 s, ttl/4) = 375 ms.

mod common;

use std::time::Duration;

use common::{epoch_of, start, wait_for, with_db, Proxy, TestDb, TTL};
use keywatch::lease::{current, fence, Leadership};
use tokio::time::{sleep, Instant};

const PERIOD: Duration = Duration::from_millis(500);
const MARGIN: Duration = Duration::from_millis(375);
/// Scheduling and round-trip slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(150);
const LONG: Duration = Duration::from_secs(10);

fn is_leader(l: &Leadership) -> bool {
    l.is_leader()
}

fn not_leader(l: &Leadership) -> bool {
    !l.is_leader()
}

fn follows<'a>(leader: &'a str) -> impl Fn(&Leadership) -> bool + 'a {
    move |l| matches!(l, Leadership::Follower { leader: x, .. } if x == leader)
}

/// A leads (started first), B follows.
async fn leader_and_follower(db: &TestDb) -> (common::Running, common::Running) {
    let mut a = start(db.pool().await, "node-a");
    wait_for(&mut a.rx, LONG, "a leads", is_leader).await;
    let mut b = start(db.pool().await, "node-b");
    wait_for(&mut b.rx, LONG, "b follows a", follows("node-a")).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_elector_becomes_leader_renews_and_releases() {
    with_db("single", |db| async move {
        let t0 = Instant::now();
        let mut a = start(db.pool().await, "node-a");
        let led = wait_for(&mut a.rx, LONG, "leads", is_leader).await;
        eprintln!("MEASURED single: leader after {:?}", led - t0);
        assert_eq!(epoch_of(&a.rx.borrow()), 1);
        let row = current(&db.pool).await.unwrap().expect("row");
        assert_eq!((row.holder.as_str(), row.epoch), ("node-a", 1));
        assert!(row.is_live());
        sleep(TTL * 2).await; // past the first deadline: only renews keep it
        let later = current(&db.pool).await.unwrap().expect("row");
        assert!(later.is_live() && later.epoch == 1, "{later:?}");
        assert!(
            later.deadline_ms > row.deadline_ms + 1000,
            "{row:?} {later:?}"
        );
        assert!(a.rx.borrow().is_leader());

        a.cancel.cancel();
        a.task.await.unwrap();
        assert_eq!(*a.rx.borrow(), Leadership::Unknown);
        let released = current(&db.pool).await.unwrap().expect("row");
        assert_eq!(released.deadline_ms, 0);
        assert!(!released.is_live());

        // The same instance again takes a new epoch.
        let mut again = start(db.pool().await, "node-a");
        wait_for(&mut again.rx, LONG, "leads again", is_leader).await;
        assert_eq!(epoch_of(&again.rx.borrow()), 2);
        again.cancel.cancel();
        again.task.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_exactly_one_leader_at_all_times() {
    with_db("two", |db| async move {
        let a = start(db.pool().await, "node-a");
        let b = start(db.pool().await, "node-b");
        let (mut samples, mut two, mut none_after_first) = (0u32, 0u32, 0u32);
        let mut leaders = Vec::new();
        let mut phase_two_at = None;
        let (t0, mut handed_over) = (Instant::now(), false);
        while t0.elapsed() < Duration::from_secs(8) {
            let (la, lb) = (a.rx.borrow().clone(), b.rx.borrow().clone());
            let who: Vec<&str> = [(&la, "node-a"), (&lb, "node-b")]
                .iter()
                .filter(|(l, _)| l.is_leader())
                .map(|(_, n)| *n)
                .collect();
            samples += 1;
            match who.as_slice() {
                [] if !leaders.is_empty() && !handed_over => none_after_first += 1,
                [one] if leaders.last() != Some(one) => leaders.push(*one),
                [_, _] => two += 1,
                _ => {}
            }
            // Halfway, stop whichever leads (gracefully): the other must take over, never both.
            if !handed_over && t0.elapsed() > Duration::from_secs(4) {
                let first = *leaders.first().expect("a leader within 4 s");
                if first == "node-a" {
                    a.cancel.cancel()
                } else {
                    b.cancel.cancel()
                }
                handed_over = true;
                phase_two_at = Some(Instant::now());
            }
            sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "MEASURED two: {samples} samples, leaders in order {leaders:?}, \
             samples with two leaders {two}, with none after the first {none_after_first}"
        );
        assert_eq!(two, 0, "two leaders at once");
        assert_eq!(
            none_after_first, 0,
            "leaderless while the leader was healthy"
        );
        assert_eq!(
            leaders.len(),
            2,
            "one leader, then the other after release: {leaders:?}"
        );
        assert!(phase_two_at.is_some());
        let row = current(&db.pool).await.unwrap().expect("row");
        assert_eq!(row.holder, leaders[1]);
        assert_eq!(row.epoch, 2);
        for r in [a, b] {
            r.cancel.cancel();
            r.task.await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_release_hands_over_fast() {
    with_db("release", |db| async move {
        let (a, mut b) = leader_and_follower(&db).await;
        let old = epoch_of(&a.rx.borrow());
        let t0 = Instant::now();
        a.cancel.cancel();
        let took = wait_for(&mut b.rx, LONG, "b takes over", is_leader).await;
        a.task.await.unwrap();
        eprintln!(
            "MEASURED release: takeover {:?} after cancel (bound ttl/3 = {PERIOD:?} + round trip)",
            took - t0
        );
        assert!(took - t0 <= PERIOD + SLACK, "{:?}", took - t0);
        assert_eq!(epoch_of(&b.rx.borrow()), old + 1);
        assert_eq!(*a.rx.borrow(), Leadership::Unknown);
        b.cancel.cancel();
        b.task.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_within_ttl_and_a_third() {
    with_db("kill", |db| async move {
        let (a, mut b) = leader_and_follower(&db).await;
        sleep(Duration::from_secs(1)).await; // a few renews
        let old = epoch_of(&a.rx.borrow());
        let t0 = Instant::now();
        a.task.abort(); // no release: like SIGKILL
        let _ = a.task.await;
        let took = wait_for(&mut b.rx, LONG, "b takes over", is_leader).await;
        let d = took - t0;
        eprintln!("MEASURED kill: takeover {d:?} after abort (bound ttl + ttl/3 = 2s)");
        assert!(d <= TTL + TTL / 3 + SLACK, "{d:?}");
        // Not before the killed leader's last renew (at most a period before the kill) lapsed.
        assert!(d >= TTL - PERIOD - SLACK, "took over early: {d:?}");
        assert_eq!(epoch_of(&b.rx.borrow()), old + 1);
        b.cancel.cancel();
        b.task.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_fenced_write_delays_takeover_and_old_epoch_is_fenced_off() {
    with_db("fence", |db| async move {
        const HOLD: Duration = Duration::from_secs(2); // longer than ttl and the lock_timeout
        let (a, mut b) = leader_and_follower(&db).await;
        let old = epoch_of(&a.rx.borrow());
        let mut write = db.pool.begin().await.unwrap();
        assert!(fence(&mut write, "node-a", old).await.unwrap());
        sqlx::query("INSERT INTO leader_writes VALUES ($1)")
            .bind(old)
            .execute(&mut *write)
            .await
            .unwrap();

        let t0 = Instant::now();
        a.cancel.cancel(); // release: not blocked by the fenced write (FOR KEY SHARE)
        a.task.await.unwrap();
        let released = t0.elapsed();
        assert!(released < PERIOD, "release blocked: {released:?}");
        assert_eq!(current(&db.pool).await.unwrap().unwrap().deadline_ms, 0);

        let early = tokio::time::timeout(HOLD, b.rx.wait_for(|l| l.is_leader()))
            .await
            .is_ok();
        assert!(!early, "took over while the fenced write was open");
        // The old leader's writer can still finish its write in this transaction.
        sqlx::query("INSERT INTO leader_writes VALUES ($1)")
            .bind(old)
            .execute(&mut *write)
            .await
            .unwrap();
        let committed = Instant::now();
        write.commit().await.unwrap();
        let took = wait_for(&mut b.rx, LONG, "b takes over", is_leader).await;
        eprintln!(
            "MEASURED fence: release took {released:?}; takeover {:?} after release, \
             {:?} after the fenced write committed (held {HOLD:?})",
            took - t0,
            took - committed
        );
        assert!(took - committed < PERIOD, "{:?}", took - committed);
        let new = epoch_of(&b.rx.borrow());
        assert_eq!(new, old + 1);

        let mut late = db.pool.begin().await.unwrap();
        assert!(
            !fence(&mut late, "node-a", old).await.unwrap(),
            "old epoch passes fence"
        );
        late.rollback().await.unwrap();
        let mut now = db.pool.begin().await.unwrap();
        assert!(fence(&mut now, "node-b", new).await.unwrap());
        now.rollback().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM leader_writes WHERE epoch = $1")
            .bind(old)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(n, 2);
        b.cancel.cancel();
        b.task.await.unwrap();
    })
    .await;
}

/// A leads through `proxy`, B follows on a direct pool; `cut` breaks A's link at t0.
/// A must step down within ttl - margin of t0 and before B takes over.
async fn cut_leader_steps_down(db: TestDb, label: &str, cut: impl FnOnce(&Proxy)) {
    let proxy = Proxy::start(&db.opts).await;
    let mut a = start(db.pool_via(&proxy).await, "node-a");
    wait_for(&mut a.rx, LONG, "a leads", is_leader).await;
    let mut b = start(db.pool().await, "node-b");
    wait_for(&mut b.rx, LONG, "b follows a", follows("node-a")).await;
    sleep(Duration::from_millis(1100)).await; // a few renews through the proxy
    assert!(a.rx.borrow().is_leader());
    let old = epoch_of(&a.rx.borrow());

    let t0 = Instant::now();
    cut(&proxy);
    let (mut arx, mut brx) = (a.rx.clone(), b.rx.clone());
    let (down, took) = tokio::join!(
        wait_for(&mut arx, LONG, "a steps down", not_leader),
        wait_for(&mut brx, LONG, "b takes over", is_leader),
    );
    eprintln!(
        "MEASURED {label}: a stepped down {:?} after the cut (bound ttl - margin = {:?}), \
         b took over {:?} after the cut, {:?} after a stepped down",
        down - t0,
        TTL - MARGIN,
        took - t0,
        took.saturating_duration_since(down)
    );
    assert!(down - t0 <= TTL - MARGIN + SLACK, "{:?}", down - t0);
    assert!(took > down, "two leaders: b led before a stepped down");
    assert_eq!(epoch_of(&b.rx.borrow()), old + 1);
    let mut late = db.pool.begin().await.unwrap();
    assert!(!fence(&mut late, "node-a", old).await.unwrap());
    late.rollback().await.unwrap();
    assert!(!a.rx.borrow().is_leader());

    a.cancel.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(2), a.task).await;
    assert!(stopped.is_ok(), "a did not stop promptly on cancel");
    proxy.shutdown.cancel();
    b.cancel.cancel();
    b.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_steps_down_within_ttl_minus_margin() {
    with_db("partition", |db| async move {
        // Black hole: renews hang, so only the timeouts end them.
        cut_leader_steps_down(db, "partition", |p| p.partition.cancel()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_connections_die_steps_down_within_ttl_minus_margin() {
    with_db("closed-port", |db| async move {
        // Every connection reset and the port closed: renews fail fast with errors.
        cut_leader_steps_down(db, "closed-port", |p| p.shutdown.cancel()).await;
    })
    .await;
}
