//! The optional HTTP endpoint (`[http] listen`): `/healthz`, `/readyz`, `/metrics`, the
//! read-only JSON API under `/api/v1/` and the dashboard.

mod api;
mod pages;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::Store;

#[derive(Clone)]
pub(crate) struct AppState {
    store: Store,
    config: Arc<Config>,
}

/// The router, for the daemon and for tests.
pub fn router(store: Store, config: Arc<Config>) -> Router {
    let state = AppState { store, config };
    let protected = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/keys", get(api::keys))
        .route("/api/v1/usage", get(api::usage))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/report", get(api::report))
        .route("/api/v1/budgets", get(api::budgets))
        .route("/", get(pages::overview))
        .route("/keys/{key_id}", get(pages::key))
        .route("/alerts", get(pages::alerts))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(protected)
        .with_state(state)
}

/// Serves until `cancel` fires. Binding errors are returned (and end the daemon: a monitor
/// that cannot be monitored should say so at once).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    config: Arc<Config>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, config))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// Constant-time comparison (`subtle`), so the token cannot be guessed byte by byte from
/// timings; comparing SHA-256 digests hides the token's length too.
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

/// With `[http] token_env`, `/readyz` and `/metrics` need `Authorization: Bearer <token>`.
fn authorised(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = state.config.http.as_ref().and_then(|h| h.token.as_ref()) else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    same(given.as_bytes(), token.expose_secret().as_bytes())
}

/// Everything but `/healthz` needs the bearer token when one is configured.
async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorised(&state, request.headers()) {
        next.run(request).await
    } else {
        api::error(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer …, http.token_env)",
        )
    }
}

/// 200 when every source was polled successfully within 3 poll intervals, else 503 naming the
/// stale sources.
async fn readyz(State(state): State<AppState>) -> Response {
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
    if stale.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", stale.join("; ")),
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

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
