//! The one CSV writer of every CSV keywatch produces (`history`, `report`, `export`'s
//! `usage.csv`, digests' attachments, `/api/v1/usage?format=csv`): RFC 4180 quoting, and text
//! fields neutralised against formula injection (OWASP "CSV Injection").
//!
//! A text field (a key, model, source or budget name; a cause) that a spreadsheet would read
//! as a formula — starting with `=`, `+`, `-`, `@`, a tab or a carriage return — gets a leading
//! `'`, and is quoted. Numbers are written by the caller as plain numbers (a negative amount is
//! a number, not a formula) and never pass through [`text`]. Control characters in text are
//! escaped as in every human-facing output ([`crate::text::clean`]).

use std::borrow::Cow;

/// Characters that make a spreadsheet evaluate a cell.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text field, neutralised and quoted as needed.
pub fn text(s: &str) -> String {
    let formula = s.starts_with(FORMULA_START);
    let s: Cow<'_, str> = if formula {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    };
    let s = crate::text::clean(&s);
    if formula || s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// One record: fields joined with commas, ended by a newline. Text fields must already have
/// gone through [`text`]; numbers are written as they are.
pub fn line<I, S>(fields: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut o = String::new();
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(f.as_ref());
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_quoted() {
        assert_eq!(text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text("+1"), "\"'+1\"");
        assert_eq!(text("-2+3"), "\"'-2+3\"");
        assert_eq!(text("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(text("\tx"), "\"'\\tx\"");
        assert_eq!(text("\rx"), "\"'\\rx\"");
    }

    #[test]
    fn ordinary_text_is_left_alone_or_quoted() {
        assert_eq!(text("prod-rag"), "prod-rag");
        assert_eq!(text("a,b"), "\"a,b\"");
        assert_eq!(text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(text("a\nb"), "a\\nb");
    }

    #[test]
    fn a_line_joins_fields() {
        assert_eq!(line([text("k"), "-1.5".to_owned()]), "k,-1.5\n");
    }
}
