//! `keywatch demo`: the whole path — real poller, store, detector and alert texts — against a
//! simulated Anthropic organisation on 127.0.0.1, with SQLite in a temporary folder. No account
//! and no network beyond loopback.

mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::app::App;
use crate::config::Config;
use crate::exit;
use crate::notify::message::AlertView;

const HOUR: i64 = 3_600;

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo; with `json`, prints alerts as a webhook would receive them.
pub async fn run(json: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    let now = Utc::now().timestamp();
    // With settle = 10m the judged bucket is the last hour that ended 10 minutes ago.
    let judged = (now - 600).div_euclid(HOUR) * HOUR - HOUR;
    let org = Arc::new(server::Org::generate(now, judged - HOUR));
    let today = now.div_euclid(86_400) * 86_400;
    let gateway_today = org.spend(server::GATEWAY, today);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("starting the simulated provider")?;
    let address = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let serve = {
        let cancel = cancel.clone();
        let router = server::router(Arc::clone(&org));
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await
        })
    };

    let dir =
        TempDir(std::env::temp_dir().join(format!("keywatch-demo-{}-{now}", std::process::id())));
    std::fs::create_dir_all(&dir.0).context("creating a temporary folder")?;
    let config_path = dir.0.join("keywatch.toml");
    let text = format!(
        r#"[storage]
url = "sqlite://keywatch.db"

[poll]
lookback = "8d"
settle = "10m"
retries = 1

[[sources]]
name = "demo-org"
provider = "anthropic"
admin_key_env = "KEYWATCH_DEMO_ADMIN_KEY"
base_url = "http://{address}"

[[budgets]]
name = "gateway-daily"
key_id = "{gateway}"
daily_usd = {limit:.2}
thresholds = [80, 100]
"#,
        gateway = server::GATEWAY,
        limit = (gateway_today / 1.2).max(0.01),
    );
    std::fs::write(&config_path, &text)?;
    let env = HashMap::from([(
        "KEYWATCH_DEMO_ADMIN_KEY".to_owned(),
        "sk-ant-admin01-DEMO".to_owned(),
    )]);
    let config = Arc::new(Config::from_str(&text, &config_path, &env)?);

    if !json {
        println!("keywatch demo: a simulated Anthropic organisation on http://{address}, 5 keys, 8 days of hourly usage");
        println!(
            "polling it with the real poller into {} …\n",
            config.storage.describe()
        );
    }
    let app = App::build(Arc::clone(&config)).await?;
    let report = app.run_once(&cancel).await;
    let mut alerts = app.store().alerts(false).await?;
    let rows = app.store().usage_row_count().await?;
    app.store().close().await;
    cancel.cancel();
    let _ = serve.await;
    anyhow::ensure!(
        report.failed_sources.is_empty(),
        "the simulated provider could not be polled"
    );

    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
    if json {
        let items: Vec<_> = alerts.iter().map(Alert::wire).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(exit::OK);
    }
    for a in &alerts {
        println!("{}", "─".repeat(78));
        print!("{}", AlertView::new(a.wire()).text());
    }
    println!("{}", "─".repeat(78));
    println!(
        "\n{} usage rows stored, {} alerts raised, in {:.1} s.",
        rows,
        alerts.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "\nTo watch your own organisation:\n  1. create an Admin API key in the Anthropic Console (sk-ant-admin…)\n  \
         2. cp config.example.toml keywatch.toml and edit it (sources, budgets, notifiers)\n  \
         3. export ANTHROPIC_ADMIN_KEY=…; keywatch check-config; keywatch run --once; keywatch alerts\n  \
         4. run `keywatch run` as a service (see systemd/keywatch.service and the README)"
    );
    Ok(exit::OK)
}
