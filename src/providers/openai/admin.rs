//! What `key_admin` needs of the client to change keys.

use super::{HttpClient, OpenAiClient};

impl OpenAiClient {
    /// The client's HTTP connection, for the key changes of `key_admin`.
    pub(in crate::providers) fn http(&self) -> &HttpClient {
        &self.http
    }
}
