//! The optional HTTP endpoint (`[http] listen`): `/healthz`, `/readyz`, `/metrics`, the
//! read-only JSON API under `/api/v1/` and the dashboard.

mod api;
mod chart;
mod guard;
mod incident;
mod key_page;
mod keys_page;
mod leadership;
mod minutes;
mod pages;
mod paging;
mod plot;
mod reports_page;
mod serve;
mod session;
mod status;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;

use crate::config::Config;
use crate::replica::Replica;
use crate::store::Store;

pub use serve::serve;

#[derive(Clone)]
pub(crate) struct AppState {
    store: Store,
    config: Arc<Config>,
    /// Made on the first sign-in or session check (see `session::key`).
    session_key: Arc<tokio::sync::OnceCell<session::SessionKey>>,
    /// This replica, on PostgreSQL (`None` on SQLite: the one process leads).
    replica: Option<Replica>,
}

/// The router of a single process (SQLite), for tests.
pub fn router(store: Store, config: Arc<Config>) -> Router {
    router_for(store, config, None)
}

/// The router of the daemon: `replica` says who leads, on PostgreSQL.
pub fn router_for(store: Store, config: Arc<Config>, replica: Option<Replica>) -> Router {
    // Every overview, budget list and key list sums the same days of spend per key: kept in
    // memory, they are read again only where usage was written since (#16).
    // (Not on PostgreSQL: the leader's writes happen in another process, which this cache
    // would not hear of; a follower reads the rollup instead.)
    let store = match store.backend() {
        crate::store::Backend::Sqlite => store.with_day_cache(),
        crate::store::Backend::Postgres => store,
    };
    let state = AppState {
        store,
        config,
        session_key: Arc::default(),
        replica,
    };
    let protected = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/keys", get(api::keys))
        .route("/api/v1/usage", get(api::usage))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/report", get(api::report))
        .route("/api/v1/budgets", get(api::budgets))
        .route("/api/v1/silences", get(api::silences))
        .route("/", get(pages::overview))
        .route("/keys", get(keys_page::keys))
        .route("/keys/{key_id}", get(key_page::key))
        .route("/alerts", get(pages::alerts))
        .route("/reports", get(reports_page::reports))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", axum::routing::post(session::logout))
        .route("/assets/keywatch.js", get(pages::script))
        .merge(protected)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// 200 when every source was polled successfully within 3 poll intervals, else 503 naming the
/// stale sources. On PostgreSQL also 503 while no replica holds a live lease; the body names
/// the leader, since when, and this replica's part.
async fn readyz(State(state): State<AppState>) -> Response {
    let (lead, lead_ok) = leadership::describe(&state).await;
    let now = Utc::now().timestamp();
    let interval = state.config.poll.interval.0.as_secs() as i64;
    let width = state.config.poll.bucket_width.seconds();
    let mut stale = Vec::new();
    for source in &state.config.sources {
        match state.store.usage_poll_state(&source.name, width).await {
            Ok(s) => match s.last_success_at {
                Some(t) if now - t <= 3 * interval => {}
                Some(t) => stale.push(format!(
                    "{}: last successful poll {}s ago",
                    source.name,
                    now - t
                )),
                None => stale.push(format!("{}: never polled successfully", source.name)),
            },
            Err(e) => stale.push(format!("{}: cannot read poll state: {e}", source.name)),
        }
    }
    if stale.is_empty() && lead_ok {
        (StatusCode::OK, format!("ready\n{lead}")).into_response()
    } else {
        if !lead_ok {
            stale.push("no replica holds the leader lease".to_owned());
        }
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n{lead}", stale.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match crate::metrics::render(&state.store).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the store: {e}\n"),
        )
            .into_response(),
    }
}
