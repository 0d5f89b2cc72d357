//! Issue #13, output items: the pending-deliveries gauge after an outage (12), capped email
//! batches that one refused message cannot block (14), Slack escaping (17), control characters
//! in tables, logs and emails (18), CSV formula injection (19), the admin key quoted in a
//! provider's error body (20), and email threading headers, money and wording (26).

mod mail;
mod text;

use base64::Engine as _;

use crate::fake_anthropic::{key_old_shape, rfc3339};
use crate::helpers::TestApp;

pub const DAY: i64 = 86_400;

pub fn old_key(app: &TestApp, id: &str, name: &str) {
    let created = rfc3339(chrono::Utc::now().timestamp() - 209 * DAY);
    app.fake
        .add_key(key_old_shape(id, name, "active", &created, None));
}

/// A mail's header block and its body decoded (7bit, quoted-printable or base64).
pub fn decode_mail(data: &str) -> (String, String) {
    let data = data.replace("\r\n", "\n");
    let (head, body) = data.split_once("\n\n").unwrap_or((&data, ""));
    let encoding = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-transfer-encoding:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "quoted-printable" => {
            let joined = body.replace("=\n", "");
            let raw = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (raw[i], hex) {
                    (b'=', Some(b)) => {
                        out.push(b);
                        i += 3;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        _ => body.to_owned(),
    };
    (head.to_owned(), body)
}

/// The value of header `name` (first occurrence, unfolded).
pub fn header(head: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut lines = head.lines().peekable();
    while let Some(l) = lines.next() {
        if l.to_ascii_lowercase().starts_with(&prefix) {
            let mut v = l[prefix.len()..].trim().to_owned();
            while let Some(next) = lines.peek().filter(|n| n.starts_with([' ', '\t'])) {
                v.push(' ');
                v.push_str(next.trim());
                lines.next();
            }
            return Some(v);
        }
    }
    None
}
