//! Browser sign-in when `[http] token_env` is set: a login form that checks the token (in
//! constant time) and sets a session cookie, so the dashboard opens in a browser without a
//! proxy that injects the header. Scripts keep using `Authorization: Bearer`.
//!
//! The session is stateless — `v1.<expiry>.<HMAC-SHA256 over the expiry, keyed by the token>` —
//! so it survives restarts, works on every replica, and a new token signs everyone out. The
//! cookie is `HttpOnly; SameSite=Strict; Path=/` (`Secure` when `http.external_url` is https):
//! other sites can neither read it nor make a browser send it, and the only state-changing
//! requests (sign-in, sign-out) also refuse a foreign `Origin`.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::pages::{esc, page};
use super::AppState;

/// The cookie's name.
pub const COOKIE: &str = "keywatch_session";
/// How long a sign-in lasts.
const LIFETIME_SECS: i64 = 12 * 3_600;

/// The key sessions are signed with: derived from a random secret keywatch keeps in its
/// database (`server_secrets`) and the dashboard token. The secret means a cookie cannot be
/// used to guess the token offline; the token means a new token signs everyone out.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn derive(server_secret: &[u8], token: &SecretString) -> Self {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(b"keywatch-session-key-v1\0");
        h.update(server_secret);
        h.update(b"\0");
        h.update(token.expose_secret().as_bytes());
        Self(h.finalize().into())
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

/// The session key of the configured token, or `None` without a token (or, logged, when the
/// database cannot give the secret: then only the bearer header is accepted).
pub async fn key(state: &AppState) -> Option<SessionKey> {
    let token = state.config.http.as_ref().and_then(|h| h.token.as_ref())?;
    state
        .session_key
        .get_or_try_init(|| async {
            let secret = state.store.server_secret("session").await?;
            Ok::<_, crate::store::StoreError>(SessionKey::derive(secret.as_bytes(), token))
        })
        .await
        .inspect_err(|e| tracing::error!(error = %e, "browser sessions are unavailable: the session secret cannot be read"))
        .ok()
        .cloned()
}

fn mac(key: &SessionKey, expiry: i64) -> Vec<u8> {
    // A 32-byte key: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else {
        return Vec::new();
    };
    mac.update(format!("keywatch-session-v1.{expiry}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A session value valid until `expiry` (Unix seconds).
pub fn issue(key: &SessionKey, expiry: i64) -> String {
    format!("v1.{expiry}.{}", B64.encode(mac(key, expiry)))
}

/// Whether `value` is a session issued with `key` that has not expired at `now`.
pub fn valid(key: &SessionKey, value: &str, now: i64) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some("v1"), Some(expiry), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(expiry), Ok(sig)) = (expiry.parse::<i64>(), B64.decode(sig)) else {
        return false;
    };
    use subtle::ConstantTimeEq;
    let expected = mac(key, expiry);
    !expected.is_empty() && expiry > now && bool::from(expected.as_slice().ct_eq(&sig))
}

/// The session cookie's value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Where to go after signing in: a path on this server only (no `//host`, no scheme).
/// Browsers drop tabs and line breaks from URLs (`/\t/evil.example` is `//evil.example`), so
/// any control character, space or backslash is refused.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '\\') =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn secure(state: &AppState) -> bool {
    state
        .config
        .external_url()
        .is_some_and(|u| u.starts_with("https://"))
}

/// A form posted from another site is refused. Browsers say so in `Sec-Fetch-Site`; older
/// ones name the page's origin in `Origin`, which is `null` when the page's referrer policy is
/// `no-referrer` (as keywatch's pages are) and absent from scripts: those pass, the token and
/// the `SameSite=Strict` cookie being the defence there.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
    else {
        return true;
    };
    let host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or_default();
    let asked = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let external = state
        .config
        .external_url()
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default());
    host.eq_ignore_ascii_case(asked) || external.is_some_and(|e| host.eq_ignore_ascii_case(e))
}

#[derive(serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

fn form(next: &str, problem: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/login\" class=\"login\">\
         <label for=\"token\">Dashboard token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">The token is the one in <code>http.token_env</code> / <code>token_file</code>. \
         Scripts send it as <code>Authorization: Bearer …</code> instead.</p>",
        problem
            .map(|p| format!("<p class=\"problem\" role=\"alert\">{}</p>", esc(p)))
            .unwrap_or_default(),
        esc(next)
    )
}

/// `GET /login`: the form (or straight on when no token is configured).
pub async fn login_page(State(state): State<AppState>, Query(q): Query<Next>) -> Response {
    let next = local_path(q.next.as_deref());
    if state
        .config
        .http
        .as_ref()
        .and_then(|h| h.token.as_ref())
        .is_none()
    {
        return Redirect::to(&next).into_response();
    }
    page(&state, "Sign in", &form(&next, None))
}

/// `POST /login`: checks the token; on success sets the session cookie and goes on to `next`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let next = local_path(f.next.as_deref());
    let Some(token) = state.config.http.as_ref().and_then(|h| h.token.as_ref()) else {
        return Redirect::to(&next).into_response();
    };
    if !same_origin(&state, &headers) {
        let mut r = page(
            &state,
            "Sign in",
            &form(&next, Some("Refused: the form was sent from another site.")),
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    if !super::guard::same(f.token.trim().as_bytes(), token.expose_secret().as_bytes()) {
        tracing::warn!("a dashboard sign-in with a wrong token was refused");
        let mut r = page(&state, "Sign in", &form(&next, Some("Wrong token.")));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let Some(session_key) = key(&state).await else {
        let mut r = page(
            &state,
            "Sign in",
            &form(&next, Some("Sessions are unavailable (the database cannot be read): send the token as a bearer header.")),
        );
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return r;
    };
    let expiry = chrono::Utc::now().timestamp() + LIFETIME_SECS;
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age={LIFETIME_SECS}; HttpOnly; SameSite=Strict{}",
        issue(&session_key, expiry),
        if secure(&state) { "; Secure" } else { "" }
    );
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

/// `POST /logout`: clears the cookie and shows the form.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&state, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let cookie = format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure(&state) { "; Secure" } else { "" }
    );
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_for_its_token() {
        let token = SecretString::from("s3cret".to_owned());
        let key = SessionKey::derive(b"server", &token);
        let s = issue(&key, 2_000);
        assert!(valid(&key, &s, 1_999));
        assert!(!valid(&key, &s, 2_000));
        let other_token = SessionKey::derive(b"server", &SecretString::from("other".to_owned()));
        assert!(!valid(&other_token, &s, 1_000));
        assert!(!valid(
            &SessionKey::derive(b"another server", &token),
            &s,
            1_000
        ));
        let token = key;
        assert!(!valid(&token, &s.replace("v1.2000", "v1.9999"), 1_000));
        for junk in ["", "v1", "v1.x.y", "v2.2000.abc", "v1.2000.%%%"] {
            assert!(!valid(&token, junk, 1_000), "{junk}");
        }
    }

    #[test]
    fn after_sign_in_only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/keys/k1?source=a")), "/keys/k1?source=a");
        for away in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "keys",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(local_path(Some(away)), "/", "{away}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; keywatch_session=v1.5.abc; b=2"),
        );
        assert_eq!(cookie(&h), Some("v1.5.abc"));
    }
}
