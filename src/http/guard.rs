//! What every answer passes through: the `Host` check (a page on loopback must not be readable
//! through a rebound DNS name), the security headers, and the bearer token.

use std::net::{IpAddr, SocketAddr};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::{api, AppState};
use crate::config::HttpConfig;

/// Sent with every answer. Pages use inline styles and SVG; the one script is served from here
/// (`/assets/keywatch.js`): no inline script, no other origin, no frames.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
         img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// The host of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased.
fn host_of(value: &str) -> Option<String> {
    let host = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        host
    } else {
        match value.split_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return None,
            None => value,
        }
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a request naming `host` is for this server: a configured name, the listen
/// address (any address when listening on all of them), or a loopback name when listening
/// on loopback or on all addresses.
pub fn host_allowed(listen: SocketAddr, allowed: &[String], host: &str) -> bool {
    let Some(host) = host_of(host) else {
        return false;
    };
    if allowed.contains(&host) {
        return true;
    }
    let ip: Option<IpAddr> = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host)
        .parse()
        .ok();
    let local = listen.ip().is_loopback() || listen.ip().is_unspecified();
    match ip {
        Some(ip) => {
            ip == listen.ip() || listen.ip().is_unspecified() || (local && ip.is_loopback())
        }
        None => local && host == "localhost",
    }
}

/// Refuses a foreign `Host` with 421 (except on `/healthz`, which tells nothing), and adds
/// the security headers to every answer.
pub async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refused = match state.config.http.as_ref() {
        Some(http) if request.uri().path() != "/healthz" => refusal(http, &request),
        _ => None,
    };
    let mut response = match refused {
        Some(r) => r,
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn refusal(http: &HttpConfig, request: &axum::extract::Request) -> Option<Response> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    if host_allowed(http.listen, &http.allowed_hosts, &host) {
        return None;
    }
    let shown: String = host.chars().take(100).filter(|c| !c.is_control()).collect();
    Some(api::error(
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "Host {shown:?} is not served here (a guard against DNS rebinding): use http://{}/, or add the name to http.allowed_hosts",
            http.listen
        ),
    ))
}

/// The credentials of an `Authorization: Bearer …` value; the scheme is case-insensitive
/// (RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Constant-time comparison (`subtle`), so the token cannot be guessed byte by byte from
/// timings; comparing SHA-256 digests hides the token's length too.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

/// With `[http] token_env`, everything but `/healthz` and the sign-in form needs
/// `Authorization: Bearer <token>` or a browser session signed in with the token.
async fn authorised(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = state.config.http.as_ref().and_then(|h| h.token.as_ref()) else {
        return true;
    };
    if let Some(session) = super::session::cookie(headers) {
        if let Some(key) = super::session::key(state).await {
            if super::session::valid(&key, session, chrono::Utc::now().timestamp()) {
                return true;
            }
        }
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .unwrap_or_default();
    same(given.as_bytes(), token.expose_secret().as_bytes())
}

/// Whether a refused request is a person's browser opening a page (sent to the sign-in form)
/// rather than a script (answered 401 JSON).
fn wants_page(request: &axum::extract::Request) -> bool {
    let path = request.uri().path();
    let page = !(path.starts_with("/api/") || path == "/metrics" || path == "/readyz");
    let html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    page && html && request.method() == axum::http::Method::GET
}

/// Everything but `/healthz` needs the bearer token when one is configured.
pub async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorised(&state, request.headers()).await {
        next.run(request).await
    } else if wants_page(&request) {
        let here = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let target = super::pages::url(&here);
        axum::response::Redirect::to(&format!("/login?next={target}")).into_response()
    } else {
        let mut r = api::error(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer …, http.token_env)",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn hosts() {
        let lo: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let named = ["keywatch.example.com".to_owned()];
        for ok in [
            "127.0.0.1:9464",
            "localhost:9464",
            "LOCALHOST",
            "[::1]:9464",
            "[::1]",
        ] {
            assert!(host_allowed(lo, &[], ok), "{ok}");
        }
        for bad in [
            "evil.example:9464",
            "evil.example",
            "",
            "10.0.0.5:9464",
            "localhost:x",
            "127.0.0.1:9464:1",
            "[::1",
        ] {
            assert!(!host_allowed(lo, &[], bad), "{bad}");
        }
        assert!(host_allowed(lo, &named, "KeyWatch.example.com:443"));
        assert!(host_allowed(any, &[], "10.0.0.5:9464"));
        assert!(host_allowed(any, &[], "localhost:9464"));
        assert!(!host_allowed(any, &[], "evil.example"));
        let one: SocketAddr = "10.0.0.5:9464".parse().unwrap();
        assert!(host_allowed(one, &[], "10.0.0.5:9464"));
        assert!(!host_allowed(one, &[], "localhost:9464"));
    }
}
