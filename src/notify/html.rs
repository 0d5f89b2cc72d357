//! The HTML part of alert emails: the same content as the text part, as a readable table with
//! inline styles only — no remote content (images, fonts, style sheets), no scripts — so it
//! renders the same in every mail client and reveals nothing when opened.

use std::fmt::Write as _;

use super::message::AlertView;
use crate::text::html as esc;

/// The HTML body of an email listing `alerts`, titled `subject`.
pub fn email_html(subject: &str, alerts: &[AlertView]) -> String {
    let mut o = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; \
         font-size: 14px; line-height: 1.4; color: #1a1a1a; margin: 0; padding: 16px;\">\n",
        esc(subject)
    );
    if alerts.len() > 1 {
        let _ = write!(o, "<p style=\"margin: 0 0 12px 0;\"><strong>{}</strong></p>\n<ul style=\"margin: 0 0 16px 0; padding-left: 20px;\">\n", esc(subject));
        for a in alerts {
            let _ = writeln!(o, "<li>{}</li>", esc(&a.title()));
        }
        o.push_str("</ul>\n");
    }
    for a in alerts {
        section(&mut o, a);
    }
    o.push_str(
        "<p style=\"color: #666; font-size: 12px; margin: 16px 0 0 0;\">Sent by keywatch. List \
         open alerts with <code>keywatch alerts</code>; silence with <code>keywatch silence</code>.\
         </p>\n</body></html>\n",
    );
    o
}

/// The colour of the bar beside an alert: by severity, green once resolved.
fn colour(a: &AlertView) -> &'static str {
    match (a.resolved(), a.severity()) {
        (true, _) => "#2e7d32",
        (_, "critical") => "#c62828",
        (_, "warning") => "#ef6c00",
        _ => "#1565c0",
    }
}

fn section(o: &mut String, a: &AlertView) {
    let _ = write!(
        o,
        "<div style=\"border-left: 4px solid {}; padding: 8px 12px; margin: 0 0 16px 0; \
         max-width: 680px;\">\n<h2 style=\"font-size: 16px; margin: 0 0 8px 0;\">{}</h2>\n\
         <p style=\"margin: 0 0 8px 0;\">{}</p>\n\
         <table role=\"presentation\" style=\"border-collapse: collapse; font-size: 13px;\">\n",
        colour(a),
        esc(a.title().trim_start_matches("[keywatch] ")),
        esc(a.summary())
    );
    for (label, value) in a.fields() {
        let _ = writeln!(
            o,
            "<tr><th style=\"text-align: left; vertical-align: top; padding: 2px 16px 2px 0; \
             color: #555; font-weight: normal; white-space: nowrap;\">{label}</th>\
             <td style=\"padding: 2px 0; word-break: break-word;\">{}</td></tr>",
            esc(&value)
        );
    }
    let _ = write!(
        o,
        "</table>\n<p style=\"margin: 8px 0 0 0;\"><strong>What to do:</strong> {}</p>\n",
        esc(a.advice())
    );
    if let Some(link) = &a.link {
        let _ = writeln!(
            o,
            "<p style=\"margin: 8px 0 0 0;\"><a href=\"{}\">Open the evidence in keywatch</a></p>",
            esc(link)
        );
    }
    let _ = write!(
        o,
        "<p style=\"color: #666; font-size: 12px; margin: 8px 0 0 0;\">Alert id: {}</p>\n</div>\n",
        esc(a.id())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_cannot_add_markup_and_nothing_remote_is_loaded() {
        let a = AlertView::parse(
            r#"{"version":1,"id":"kw_1","status":"firing","rule":"spike","severity":"critical",
            "key_name":"<img src=https://evil.example/x.png> & \"quoted\"",
            "summary":"<script>alert(1)</script>","unit":"usd","observed":7.41,"baseline":0.49,
            "starts_at":"2026-11-26T14:00:00Z"}"#,
        )
        .unwrap()
        .linked(Some("https://kw.example"));
        let page = email_html("[keywatch] CRITICAL spike", &[a]);
        for raw in ["<img", "<script", "<link", "<style", "@import", "url("] {
            assert!(!page.contains(raw), "{raw} in {page}");
        }
        assert!(
            page.contains("&lt;img src=https://evil.example/x.png&gt; &amp; &quot;quoted&quot;")
        );
        assert!(page.contains("<th style=\"text-align: left; vertical-align: top; padding: 2px 16px 2px 0; color: #555; font-weight: normal; white-space: nowrap;\">Observed</th>"));
        assert!(page.contains("<a href=\"https://kw.example/alerts#alert-kw_1\">"));
    }
}
