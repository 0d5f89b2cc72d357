//! Helpers for the PostgreSQL lease tests: a throw-away database, running electors, a TCP
//! proxy that can partition or close a pool's connections.

use std::future::Future;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use keywatch::lease::{Elector, Leadership, LeaseConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const ENV: &str = "KEYWATCH_TEST_POSTGRES";

pub const SCHEMA: &str = r#"
CREATE FUNCTION kw_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
CREATE TABLE leader_lease (
    id BIGINT PRIMARY KEY CHECK (id = 1), holder TEXT COLLATE "C" NOT NULL, epoch BIGINT NOT NULL,
    since_ms BIGINT NOT NULL, deadline_ms BIGINT NOT NULL);
CREATE TABLE leader_writes (epoch BIGINT NOT NULL);
"#;

/// A fresh database `kwlease_<random>` with the schema.
pub struct TestDb {
    /// Options for the throw-away database.
    pub opts: PgConnectOptions,
    /// A pool on it for the test's own reads and fenced writes.
    pub pool: PgPool,
}

impl TestDb {
    /// A pool of its own (each elector gets one, like a replica).
    pub async fn pool(&self) -> PgPool {
        pool_with(self.opts.clone()).await
    }

    /// A pool that reaches the database only through `proxy`.
    pub async fn pool_via(&self, proxy: &Proxy) -> PgPool {
        let opts = self.opts.clone().host("127.0.0.1").port(proxy.port);
        pool_with(opts).await
    }
}

async fn pool_with(opts: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(opts)
        .await
        .expect("connect")
}

/// Runs `body` on a fresh database and drops the database afterwards, even if `body` panics.
/// Prints a loud SKIPPED line and returns when `KEYWATCH_TEST_POSTGRES` is unset.
pub async fn with_db<F, Fut>(test: &str, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let Ok(admin_url) = std::env::var(ENV) else {
        // Straight to stderr, past the test harness's capture, so it shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {ENV} not set ({test}) ***\n"
        );
        return;
    };
    let admin = PgConnectOptions::from_str(&admin_url).expect("KEYWATCH_TEST_POSTGRES url");
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("randomness");
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("kwlease_{name}");
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .expect("admin connect");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let opts = admin.clone().database(&name);
    let pool = pool_with(opts.clone()).await;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.expect("schema");
    let result = tokio::spawn(body(TestDb {
        opts,
        pool: pool.clone(),
    }))
    .await;
    pool.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop database");
    if let Err(e) = result {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

pub const TTL: Duration = Duration::from_millis(1500);

/// An elector running on its own task.
pub struct Running {
    pub rx: watch::Receiver<Leadership>,
    pub cancel: CancellationToken,
    pub task: JoinHandle<()>,
}

pub fn start(pool: PgPool, instance: &str) -> Running {
    let cfg = LeaseConfig {
        instance: instance.to_owned(),
        ttl: TTL,
    };
    let (elector, rx) = Elector::new(pool, cfg);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(elector.run(cancel.clone()));
    Running { rx, cancel, task }
}

/// Waits until the published value satisfies `pred`; returns when that was seen.
pub async fn wait_for(
    rx: &mut watch::Receiver<Leadership>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Leadership) -> bool,
) -> Instant {
    let seen = match tokio::time::timeout(limit, rx.wait_for(pred)).await {
        Ok(Ok(_)) => Some(true),
        Ok(Err(_)) => Some(false),
        Err(_) => None,
    };
    match seen {
        Some(true) => Instant::now(),
        Some(false) => panic!("{what}: elector gone"),
        None => panic!("{what}: not within {limit:?} (now {:?})", *rx.borrow()),
    }
}

pub fn epoch_of(l: &Leadership) -> i64 {
    match l {
        Leadership::Leader { epoch, .. } => *epoch,
        other => panic!("not leader: {other:?}"),
    }
}

/// A TCP relay to the database. `partition` makes it a black hole (connections stay open,
/// nothing passes either way, new connections hang); `shutdown` closes every connection and
/// the listening port (connection refused from then on).
pub struct Proxy {
    pub port: u16,
    pub partition: CancellationToken,
    pub shutdown: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream: &PgConnectOptions) -> Proxy {
        let target = (upstream.get_host().to_owned(), upstream.get_port());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let partition = CancellationToken::new();
        let shutdown = CancellationToken::new();
        let (p, s) = (partition.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let inbound = tokio::select! {
                    () = s.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok((inbound, _)) => inbound,
                        Err(_) => continue,
                    },
                };
                tokio::spawn(relay(inbound, target.clone(), p.clone(), s.clone()));
            }
        });
        Proxy {
            port,
            partition,
            shutdown,
        }
    }
}

async fn relay(
    mut inbound: TcpStream,
    target: (String, u16),
    partition: CancellationToken,
    shutdown: CancellationToken,
) {
    if !partition.is_cancelled() {
        let Ok(mut outbound) = TcpStream::connect((target.0.as_str(), target.1)).await else {
            return;
        };
        let partitioned = tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
            () = partition.cancelled() => true,
            () = shutdown.cancelled() => false,
        };
        if partitioned {
            shutdown.cancelled().await;
        }
        return;
    }
    shutdown.cancelled().await;
}
