//! The line of a key in the config text, so errors found after parsing (the sense checks) name
//! the line as parse errors do: `line 12: budgets[1].daily_usd: …`.

use toml_edit::{ImDocument, Item, Table};

/// One step of a key path as the checks write it: `budgets[1].daily_usd`, `prices."a.b".input`.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &str) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '.' => {
                chars.next();
            }
            '[' => {
                chars.next();
                let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                out.push(Step::Index(digits.parse().ok()?));
            }
            '"' => {
                chars.next();
                let mut key = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => key.push(chars.next()?),
                        c => key.push(c),
                    }
                }
                out.push(Step::Key(key));
            }
            _ => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                out.push(Step::Key(key));
            }
        }
    }
    Some(out)
}

/// The 1-based line where `path` is written in `text`: the key itself when present, else the
/// nearest enclosing table or array entry. None when the text does not parse or nothing matches.
pub(super) fn line_of(text: &str, path: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let steps = steps(path)?;
    let mut table: &Table = doc.as_table();
    let mut item: Option<&Item> = None;
    let mut span = table.span();
    for step in &steps {
        match step {
            Step::Key(k) => {
                let Some((key, value)) = table.get_key_value(k) else {
                    break;
                };
                span = key.span().or(span);
                item = Some(value);
            }
            Step::Index(i) => {
                let Some(entry) = item
                    .and_then(Item::as_array_of_tables)
                    .and_then(|a| a.get(*i))
                else {
                    break;
                };
                span = entry.span().or(span);
                item = None;
                table = entry;
                continue;
            }
        }
        match item.and_then(Item::as_table_like) {
            Some(_) if item.and_then(Item::as_table).is_some() => {
                table = item.and_then(Item::as_table)?;
            }
            _ => {}
        }
    }
    let start = span?.start.min(text.len());
    Some(text[..start].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[poll]\ninterval = \"2m\"\n\n[[budgets]]\nname = \"a\"\n\n[[budgets]]\nname = \"b\"\ndaily_usd = -1\n\n[prices.\"claude-3.5\"]\ninput = 3\n";

    #[test]
    fn keys_tables_and_array_entries_are_found() {
        assert_eq!(line_of(TEXT, "poll.interval"), Some(2));
        assert_eq!(line_of(TEXT, "budgets[1].daily_usd"), Some(9));
        assert_eq!(line_of(TEXT, "budgets[0].name"), Some(5));
        assert_eq!(line_of(TEXT, "prices.\"claude-3.5\".input"), Some(12));
        // A key that is absent points at its table.
        assert_eq!(line_of(TEXT, "budgets[1].monthly_usd"), Some(7));
        assert_eq!(line_of("garbage = [", "x"), None);
    }
}
