//! Text that came from outside (a provider's key or model name, an error body, a receiver's
//! answer) made safe for what a person reads: terminals, logs, emails and chat messages.
//!
//! [`clean`] is the one function every human-facing output uses: control characters (C0, DEL,
//! C1) and the Unicode controls that reorder or hide text (bidi overrides and isolates,
//! zero-width joiners, line/paragraph separators) become visible escapes such as `\x1b`, `\n` or
//! `\u{202e}`, so a name can neither drive a terminal nor forge a line.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a person's screen as is.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width space/joiners, LRM/RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}' // zero-width no-break space
            | '\u{fff9}'..='\u{fffb}') // interlinear annotations
}

fn escape(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn clean_keeping(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of outside text, safe to print: every control character escaped (newlines and tabs
/// included).
pub fn clean(text: &str) -> Cow<'_, str> {
    clean_keeping(text, |_| false)
}

/// A whole body keywatch composed (an email, a log record): its line breaks (`\n`) and tabs are
/// kept, every other control character is escaped. Outside text inside it should already have
/// gone through [`clean`], so it cannot add lines of its own.
pub fn clean_multiline(text: &str) -> Cow<'_, str> {
    clean_keeping(text, |c| c == '\n' || c == '\t')
}

/// Unix seconds as RFC 3339 UTC to the second (`2026-11-26T14:00:00Z`); empty when out of range.
pub fn rfc3339(ts: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `text` escaped for HTML content and attribute values.
pub fn html(text: &str) -> String {
    let mut o = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Text for Slack `mrkdwn` and plain `text` fields: control characters escaped ([`clean`]), then
/// `&`, `<` and `>` as Slack requires, so outside text can neither mention (`<!channel>`) nor
/// plant a link (`<https://…|label>`).
pub fn slack(text: &str) -> String {
    slack_escape(&clean(text))
}

/// `&`, `<` and `>` escaped for Slack; nothing else changed (for text keywatch composed that
/// holds its own line breaks).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A US dollar amount for JSON: rounded to 6 decimals (a millionth of a dollar, finer than any
/// price), so binary floating-point noise such as `11.969100000000001` never shows.
pub fn usd(v: f64) -> f64 {
    if !v.is_finite() || v.abs() >= 1e12 {
        return v;
    }
    (v * 1e6).round() / 1e6
}

/// `1 failed poll`, `3 failed polls`: a count with its noun in the right number.
pub fn count(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(
            clean("a\u{1b}[2Jb\u{7}c\r\nd\te\u{202e}f\u{85}"),
            "a\\x1b[2Jb\\x07c\\r\\nd\\te\\u{202e}f\\u{85}"
        );
        assert!(matches!(clean("plain ünïcode — ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn multiline_keeps_line_breaks_only() {
        assert_eq!(clean_multiline("a\nb\t\u{1b}c\r"), "a\nb\t\\x1bc\\r");
    }

    #[test]
    fn slack_text_cannot_mention_or_link() {
        assert_eq!(
            slack("<!channel> & <https://evil.example|click here>"),
            "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;"
        );
    }

    #[test]
    fn money_loses_float_noise() {
        assert_eq!(usd(11.969100000000001).to_string(), "11.9691");
        assert_eq!(usd(-0.1 - 0.2), -0.3);
        assert!(usd(f64::NAN).is_nan());
    }

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count(1, "failed poll", "failed polls"), "1 failed poll");
        assert_eq!(count(0, "failed poll", "failed polls"), "0 failed polls");
    }
}
