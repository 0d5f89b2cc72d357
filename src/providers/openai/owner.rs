//! Who owns an OpenAI project key, as `keywatch keys` shows it (`created_by`).

use serde::Deserialize;

/// `{"type": "user", "user": {"email", "name", "id"}}` or
/// `{"type": "service_account", "service_account": {"name", "id"}}`.
#[derive(Deserialize)]
pub(super) struct Owner {
    #[serde(rename = "type")]
    kind: Option<String>,
    user: Option<Person>,
    service_account: Option<Person>,
}

#[derive(Deserialize)]
struct Person {
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
}

impl Owner {
    pub(super) fn describe(self) -> Option<String> {
        let kind = self.kind.unwrap_or_else(|| "user".to_owned());
        let who = self.user.or(self.service_account)?;
        let name = who.email.or(who.name).or(who.id)?;
        Some(format!("{kind}:{name}"))
    }
}
