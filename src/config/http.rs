//! `[http]`: the listen address, the token, the time zone, which `Host` names are served, and
//! the connection limits that keep HTTP load away from the pollers' and database's descriptors.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use super::schema::HttpSection;
use super::secret::{pair, Env};
use super::{ConfigError, HttpConfig};

type Result<T> = std::result::Result<T, ConfigError>;

/// Default of `http.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// Default of `http.idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn build_http(h: &HttpSection, base_dir: &Path, env: &dyn Env) -> Result<HttpConfig> {
    let listen: SocketAddr = h.listen.parse().map_err(|_| {
        ConfigError::invalid(
            "http.listen",
            format!(
                "{:?} is not an address:port such as \"127.0.0.1:9464\"",
                h.listen
            ),
        )
    })?;
    let token =
        pair(h.token_env.clone(), h.token_file.clone()).resolve("http.token", base_dir, env)?;
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(ConfigError::invalid(
            "http.token_env",
            format!(
                "http.listen = {:?} is not a loopback address, so a bearer token is required: \
                 set http.token_env or http.token_file",
                h.listen
            ),
        ));
    }
    let timezone: Tz = h.timezone.parse().map_err(|_| {
        ConfigError::invalid(
            "http.timezone",
            format!(
                "unknown time zone {:?}: use an IANA name such as \"Europe/Berlin\"",
                h.timezone
            ),
        )
    })?;
    let mut allowed_hosts = h
        .allowed_hosts
        .iter()
        .map(|name| host_name(name))
        .collect::<Result<Vec<_>>>()?;
    let external_url = h.external_url.as_deref().map(external_url).transpose()?;
    if let Some(host) = external_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    {
        if !allowed_hosts.contains(&host) {
            allowed_hosts.push(host);
        }
    }
    let max_connections = h.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=10_000).contains(&max_connections) {
        return Err(ConfigError::invalid(
            "http.max_connections",
            format!("must be between 1 and 10000, got {max_connections}"),
        ));
    }
    let idle_timeout = h.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0);
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&idle_timeout) {
        return Err(ConfigError::invalid(
            "http.idle_timeout",
            format!(
                "must be between 1s and 10m, got {}",
                humantime::format_duration(idle_timeout)
            ),
        ));
    }
    Ok(HttpConfig {
        listen,
        timezone,
        token,
        allowed_hosts,
        max_connections: max_connections as usize,
        idle_timeout,
        external_url,
    })
}

/// `http.external_url`: an absolute http(s) URL without query or fragment, returned without
/// its trailing slash so links can be appended.
fn external_url(raw: &str) -> Result<String> {
    let bad = |why: &str| {
        ConfigError::invalid(
            "http.external_url",
            format!("{raw:?} {why}: give the dashboard's address as people open it, such as \"https://keywatch.example.com\""),
        )
    };
    let url = reqwest::Url::parse(raw).map_err(|_| bad("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("is not an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("has a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "carries credentials (they would be sent in every notification)",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// One `http.allowed_hosts` entry: a host name or IP address, without scheme, port or path.
fn host_name(name: &str) -> Result<String> {
    let bad = |why: &str| {
        ConfigError::invalid(
            "http.allowed_hosts",
            format!("{name:?} {why}: give a host name such as \"keywatch.example.com\", without scheme, port or path"),
        )
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.contains("://") || name.contains('/') {
        return Err(bad("is a URL"));
    }
    let ipv6 = name.starts_with('[') && name.ends_with(']');
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        || (ipv6
            && name
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, '[' | ']' | ':' | '.')));
    if !ok {
        return Err(bad("is not a host name"));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::{external_url, host_name};

    #[test]
    fn the_external_url_is_an_http_base_without_trailing_slash() {
        assert_eq!(
            external_url("https://keywatch.example.com/").unwrap(),
            "https://keywatch.example.com"
        );
        assert_eq!(
            external_url("http://ops.example/keywatch/").unwrap(),
            "http://ops.example/keywatch"
        );
        for bad in [
            "keywatch.example.com",
            "ftp://keywatch.example.com",
            "https://keywatch.example.com/?a=1",
            "https://user:pw@keywatch.example.com",
        ] {
            let e = external_url(bad).unwrap_err().to_string();
            assert!(e.contains("http.external_url"), "{e}");
        }
    }

    #[test]
    fn allowed_hosts_are_plain_names() {
        assert_eq!(
            host_name("KeyWatch.Example.com").unwrap(),
            "keywatch.example.com"
        );
        assert_eq!(host_name("[::1]").unwrap(), "[::1]");
        assert_eq!(host_name("10.0.0.5").unwrap(), "10.0.0.5");
        for bad in [
            "",
            "https://keywatch.example.com",
            "keywatch.example.com:8080",
            "a b",
            "x/y",
        ] {
            let e = host_name(bad).unwrap_err().to_string();
            assert!(e.contains("http.allowed_hosts"), "{e}");
        }
    }
}
