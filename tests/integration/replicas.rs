//! Two `keywatch run` replicas on one PostgreSQL database (#21): the leader is killed with
//! SIGKILL at ten random moments (backfill pages, detection, deliveries in flight), a fresh
//! leader each time, the killed replica restarted as a follower. Afterwards the store holds
//! exactly what the provider served, each alert exists once, every notification reached the
//! receiver, none under two `webhook-id`s, and every takeover came within two poll intervals.
//!
//! Runs in the PostgreSQL pass only (`KEYWATCH_TEST_BACKEND=postgres`).
//! KEYWATCH_REPLICA_KILLS (default 10) and KEYWATCH_REPLICA_SEED change the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::detection::seed;
use crate::helpers::{spawn_app_with_lookback, this_hour, without_cost, TestApp, HOUR};
use crate::receivers::WebhookReceiver;

/// The lease the replicas run with (the test apps' on PostgreSQL, `helpers::storage_section`): a
/// dead leader is replaced within 1 s + 1/3 s.
const LEASE: &str = "1s";
/// `poll.interval` of the test config: takeovers must come within two of these.
const POLL_INTERVAL: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes this replica's config: the app's, with its own instance name.
fn replica_config(app: &TestApp, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(&app.config_path).unwrap().replace(
        &app.storage_section(),
        &format!("{}instance = \"{name}\"\n", app.storage_section()),
    );
    let path = app.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start(app: &TestApp, config: &Path) -> tokio::process::Child {
    crate::daemon::start_daemon_with(app, config)
}

/// The live lease's (holder, epoch), if any.
async fn leader(pool: &PgPool) -> Option<(String, i64)> {
    sqlx::query_as(
        "SELECT holder, epoch FROM leader_lease WHERE id = 1 AND deadline_ms > kw_now_ms()",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// The first leader, once the replicas have migrated the database and one took the lease.
async fn first_leader(pool: &PgPool) -> (String, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Until the first start migrated, the table does not exist: not an error here.
        if let Ok(Some(l)) = sqlx::query_as::<_, (String, i64)>(
            "SELECT holder, epoch FROM leader_lease WHERE id = 1 AND deadline_ms > kw_now_ms()",
        )
        .fetch_optional(pool)
        .await
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no replica took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a replica other than `not` leads with an epoch above `after`.
async fn wait_for_leader(pool: &PgPool, not: Option<&str>, after: i64) -> (String, i64) {
    let deadline = Instant::now() + 2 * POLL_INTERVAL;
    loop {
        if let Some((holder, epoch)) = leader(pool).await {
            if epoch > after && Some(holder.as_str()) != not {
                return (holder, epoch);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new leader within two poll intervals"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ten_sigkills_of_the_leader_lose_nothing_and_send_nothing_twice() {
    if !crate::backend::is_postgres() {
        crate::backend::skip(
            module_path!(),
            "needs KEYWATCH_TEST_BACKEND=postgres (replicas share a PostgreSQL database)",
        );
        return;
    }
    let kills = env_or("KEYWATCH_REPLICA_KILLS", 10);
    let mut rng = fastrand::Rng::with_seed(env_or("KEYWATCH_REPLICA_SEED", 20_261_207));

    let hook = WebhookReceiver::start().await;
    hook.set_delay(Duration::from_millis(120));
    let probe = spawn_app_with_lookback("8d", "").await;
    let limit = seed(&probe);
    drop(probe);
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_normal2\"\ndaily_usd = {limit}\n\
             [[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"json\"\n\
             secret_env = \"TEST_WEBHOOK_SECRET\"\nmin_severity = \"info\"\n",
            hook.url()
        ),
    )
    .await;
    seed(&app);
    // Small, slow pages spread the backfill over several seconds of leadership.
    {
        let mut data = app.fake.data.lock().unwrap();
        data.usage_delay = Duration::from_millis(250);
        data.usage_page_size = 6;
    }
    let expected = app.expected_rows(this_hour() - 8 * 24 * HOUR);
    let configs = [
        replica_config(&app, "replica-a"),
        replica_config(&app, "replica-b"),
    ];
    let names = ["replica-a", "replica-b"];
    let mut replicas = vec![start(&app, &configs[0]), start(&app, &configs[1])];
    let pool = PgPool::connect(&app.storage_url).await.unwrap();
    // The first start migrates; the lease table exists once a replica leads.
    let (mut holder, mut epoch) = first_leader(&pool).await;

    let mut takeovers = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..2_000))).await;
        let i = names
            .iter()
            .position(|n| *n == holder)
            .expect("a known leader");
        replicas[i].kill().await.unwrap(); // SIGKILL
        let killed = Instant::now();
        replicas[i].wait().await.unwrap();
        let (next, next_epoch) = wait_for_leader(&pool, Some(&holder), epoch).await;
        takeovers.push(killed.elapsed());
        replicas[i] = start(&app, &configs[i]);
        (holder, epoch) = (next, next_epoch);
    }
    for r in &mut replicas {
        r.kill().await.unwrap();
        r.wait().await.unwrap();
    }
    pool.close().await;
    let slowest = takeovers.iter().max().copied().unwrap_or_default();
    eprintln!(
        "takeovers after SIGKILL of the leader (lease {LEASE}): {:?}; slowest {slowest:?}",
        takeovers
            .iter()
            .map(|d| format!("{:.2}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    assert!(slowest < 2 * POLL_INTERVAL, "{takeovers:?}");

    // `run --once` refuses while a replica's lease is live (it would work beside the leader).
    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("leads (epoch"), "{stderr}");
    // Once the killed leader's lease lapsed, one clean cycle finishes what the last kill
    // interrupted.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    app.fake.data.lock().unwrap().usage_delay = Duration::ZERO;
    hook.set_delay(Duration::ZERO);
    app.cli_ok(&["run", "--once"]).await;

    assert_eq!(without_cost(&app.stored_rows().await), expected);
    let (alerts, _, resent) = crate::crash::alerts_delivered_once(&app, &hook).await;
    for (rule, key) in [("spike", "apikey_spiky"), ("budget", "apikey_normal2")] {
        assert!(
            alerts
                .iter()
                .any(|a| a["rule"] == rule && a["key_id"] == key),
            "{rule} on {key}: {alerts:#?}"
        );
    }
    eprintln!(
        "{} alerts, {} notifications accepted, {resent} re-sent after a kill (same webhook-id)",
        alerts.len(),
        hook.accepted().len()
    );
}

#[tokio::test]
async fn readyz_metrics_and_the_dashboard_name_the_leader_and_a_follower_takes_over() {
    if !crate::backend::is_postgres() {
        crate::backend::skip(
            module_path!(),
            "needs KEYWATCH_TEST_BACKEND=postgres (replicas share a PostgreSQL database)",
        );
        return;
    }
    use crate::daemon::{free_port, get};
    let app = spawn_app_with_lookback("1d", "").await;
    app.fake.add_usage(
        this_hour() - 2 * HOUR,
        crate::helpers::row(Some("apikey_01A"), "claude-sonnet-4-20250514", 10, 1),
    );
    let ports = [free_port(), free_port()];
    let names = ["replica-a", "replica-b"];
    let mut replicas = Vec::new();
    for (name, port) in names.iter().zip(ports) {
        let config = replica_config(&app, name);
        let text = std::fs::read_to_string(&config).unwrap()
            + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
        std::fs::write(&config, text).unwrap();
        replicas.push(start(&app, &config));
    }
    let readyz = |port: u16| async move { get(&format!("http://127.0.0.1:{port}/readyz")).await };
    // Both answer once the leader has polled; the body names the leader on both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader_name = loop {
        let (a, b) = (readyz(ports[0]).await, readyz(ports[1]).await);
        if a.0 == 200 && b.0 == 200 {
            let named: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| a.1.contains(&format!("leader: {n} (epoch")))
                .collect();
            assert_eq!(named.len(), 1, "{}", a.1);
            assert!(
                b.1.contains(&format!("leader: {} (epoch", named[0])),
                "{}",
                b.1
            );
            assert!(a.1.contains("this replica: replica-a"), "{}", a.1);
            break named[0];
        }
        assert!(Instant::now() < deadline, "not ready: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let i = names.iter().position(|n| *n == leader_name).unwrap();
    let other = 1 - i;
    let metrics = get(&format!("http://127.0.0.1:{}/metrics", ports[i]))
        .await
        .1;
    assert!(
        metrics.contains(&format!("keywatch_leader{{instance=\"{leader_name}\"}} 1")),
        "{metrics}"
    );
    let metrics = get(&format!("http://127.0.0.1:{}/metrics", ports[other]))
        .await
        .1;
    assert!(
        metrics.contains(&format!(
            "keywatch_leader{{instance=\"{}\"}} 0",
            names[other]
        )),
        "{metrics}"
    );
    let page = get(&format!("http://127.0.0.1:{}/", ports[other])).await.1;
    assert!(
        page.contains(&format!("replica {} follows {leader_name}", names[other])),
        "the dashboard names the leader"
    );

    // The leader dies; the follower leads within the lease and says so.
    replicas[i].kill().await.unwrap();
    replicas[i].wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(ports[other]).await;
        if status == 200 && body.contains(&format!("leader: {} (epoch", names[other])) {
            assert!(body.contains(&format!("this replica: {} (leader)", names[other])));
            break;
        }
        assert!(Instant::now() < deadline, "no takeover: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(&format!("http://127.0.0.1:{}/metrics", ports[other]))
        .await
        .1;
    assert!(
        metrics.contains(&format!(
            "keywatch_leader{{instance=\"{}\"}} 1",
            names[other]
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stuck_leader_is_replaced_and_follows_once_it_resumes() {
    if !crate::backend::is_postgres() {
        crate::backend::skip(
            module_path!(),
            "needs KEYWATCH_TEST_BACKEND=postgres (replicas share a PostgreSQL database)",
        );
        return;
    }
    let app = spawn_app_with_lookback("1d", "").await;
    let configs = [
        replica_config(&app, "replica-a"),
        replica_config(&app, "replica-b"),
    ];
    let names = ["replica-a", "replica-b"];
    let mut replicas = vec![start(&app, &configs[0]), start(&app, &configs[1])];
    let pool = PgPool::connect(&app.storage_url).await.unwrap();
    let (holder, epoch) = first_leader(&pool).await;
    let i = names.iter().position(|n| *n == holder).unwrap();
    let pid = replicas[i].id().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let stopped = Instant::now();
    let (next, next_epoch) = wait_for_leader(&pool, Some(&holder), epoch).await;
    let took = stopped.elapsed();
    eprintln!("a stopped leader was replaced after {took:?} (lease {LEASE})");
    assert_eq!(next, names[1 - i]);
    signal("-CONT");
    // Resumed, the old leader finds the lease taken and follows: the new one keeps it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leader(&pool).await, Some((next, next_epoch)));
    assert!(
        replicas[i].try_wait().unwrap().is_none(),
        "the resumed replica keeps running as a follower"
    );
    for r in &mut replicas {
        r.kill().await.unwrap();
        r.wait().await.unwrap();
    }
    pool.close().await;
}
