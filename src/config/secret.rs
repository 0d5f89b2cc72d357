//! Where secrets come from: an environment variable (`<name>_env`) or a file (`<name>_file`),
//! never the config file itself.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::ConfigError;
use secrecy::SecretString;

/// Looks up environment variables; a seam so tests can resolve secrets without touching the
/// process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    /// Whether a secret that cannot be found may be left out: true only for the commands that
    /// read the database and never use a secret (`report`, `history`, `alerts`, …).
    fn secrets_optional(&self) -> bool {
        false
    }
}

/// An environment for the read-only commands: a secret variable that is not set, or a secret
/// file that cannot be read, is not an error (nothing will use it); everything else is checked
/// as for `run`.
pub struct ReadOnlyEnv<E>(pub E);

impl<E: Env> Env for ReadOnlyEnv<E> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name)
    }
    fn secrets_optional(&self) -> bool {
        true
    }
}

/// What stands in for a secret a read-only command did not load; it never leaves the process.
const NOT_LOADED: &str = "(not loaded by a read-only command)";

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The pair of keys that names one secret's origin, e.g. `admin_key_env` / `admin_key_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl SecretRef {
    pub fn is_set(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// Resolves the secret. `key` is the config path of the secret without its suffix
    /// (e.g. `sources[0].admin_key`), used in every error message.
    ///
    /// Relative `_file` paths resolve against `$CREDENTIALS_DIRECTORY` when systemd sets it
    /// (`LoadCredential=`), else against the config file's folder.
    pub fn resolve(
        &self,
        key: &str,
        base_dir: &Path,
        env: &dyn Env,
    ) -> Result<Option<SecretString>, ConfigError> {
        self.resolve_as(&format!("{key}_env"), &format!("{key}_file"), base_dir, env)
    }

    /// As [`SecretRef::resolve`], with the two keys named in full (`--to-password-env` and
    /// `--to-password-file` for a command's arguments).
    pub fn resolve_as(
        &self,
        env_key: &str,
        file_key: &str,
        base_dir: &Path,
        env: &dyn Env,
    ) -> Result<Option<SecretString>, ConfigError> {
        let value = match (&self.env, &self.file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    env_key,
                    format!("give either {env_key} or {file_key}, not both"),
                ))
            }
            (Some(var), None) => {
                if var.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        env_key,
                        "is empty: name the environment variable that holds the secret",
                    ));
                }
                match env.var(var) {
                    Some(v) => v,
                    None if env.secrets_optional() => {
                        return Ok(Some(SecretString::from(NOT_LOADED)))
                    }
                    None => {
                        return Err(ConfigError::invalid(
                            env_key,
                            format!(
                            "environment variable {var} is not set: export it, or use {file_key}"
                        ),
                        ))
                    }
                }
            }
            (None, Some(file)) => {
                let path = resolve_credential_path(file, base_dir, env);
                match super::secret_file::read(&path) {
                    Ok(v) => v,
                    Err(_) if env.secrets_optional() => {
                        return Ok(Some(SecretString::from(NOT_LOADED)))
                    }
                    Err(e) => {
                        return Err(ConfigError::invalid(
                            file_key,
                            format!("cannot read {}: {e}", path.display()),
                        ))
                    }
                }
            }
        };
        let trimmed = value.trim_end_matches(['\r', '\n']);
        if trimmed.trim().is_empty() {
            let which = if self.env.is_some() {
                env_key
            } else {
                file_key
            };
            return Err(ConfigError::invalid(
                which,
                "the secret it points to is empty",
            ));
        }
        remember(trimmed);
        Ok(Some(SecretString::from(trimmed.to_owned())))
    }

    /// Resolves a secret that must be present.
    pub fn resolve_required(
        &self,
        key: &str,
        base_dir: &Path,
        env: &dyn Env,
    ) -> Result<SecretString, ConfigError> {
        self.resolve(key, base_dir, env)?.ok_or_else(|| {
            ConfigError::invalid(
                format!("{key}_env"),
                format!("is required: set {key}_env (an environment variable) or {key}_file"),
            )
        })
    }

    /// A short description for summaries: where the secret comes from, never its value.
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(var), _) => format!("env ${var}"),
            (None, Some(file)) => format!("file {}", file.display()),
            (None, None) => "none".to_owned(),
        }
    }
}

fn resolve_credential_path(file: &Path, base_dir: &Path, env: &dyn Env) -> PathBuf {
    if file.is_absolute() {
        return file.to_path_buf();
    }
    match env.var("CREDENTIALS_DIRECTORY") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join(file),
        _ => base_dir.join(file),
    }
}

/// Builds a reference from a section's `<name>_env` and `<name>_file` fields.
pub fn pair(env: Option<String>, file: Option<PathBuf>) -> SecretRef {
    SecretRef { env, file }
}

/// What a redacted secret reads as.
pub const REDACTED: &str = "[REDACTED]";

/// Shorter secrets are not redacted from text: they would blank ordinary words. Every secret
/// keywatch is given (admin keys, routing keys, webhook secrets, tokens) is far longer.
const MIN_REDACTED_LEN: usize = 6;

/// Every secret resolved from any configuration in this process, longest first: the one
/// redactor of keywatch, applied where outside text (a provider's or a receiver's error body)
/// enters an error, before anything is stored (alert summaries, poll and delivery errors) and
/// by the log writer, whatever the text's origin.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `secret` (and, for a `whsec_` webhook secret, its key part) to the redactor.
fn remember(secret: &str) {
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let parts = [Some(secret), secret.strip_prefix("whsec_")];
    for part in parts.into_iter().flatten() {
        if part.len() >= MIN_REDACTED_LEN && !known.iter().any(|k| k == part) {
            known.push(part.to_owned());
        }
    }
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// `text` with every configured secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| text.contains(k.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), REDACTED);
        }
    }
    Cow::Owned(out)
}

/// Keys that would hold a secret's value. Any of them in the file is refused with a hint.
pub const LITERAL_SECRET_KEYS: &[&str] = &[
    "admin_key",
    "api_key",
    "password",
    "secret",
    "routing_key",
    "token",
];

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_env_var() {
        let r = pair(Some("K".into()), None);
        let s = r
            .resolve_required("x.admin_key", Path::new("/"), &env(&[("K", "v1")]))
            .unwrap();
        assert_eq!(s.expose_secret(), "v1");
    }

    #[test]
    fn missing_env_var_names_key_and_var() {
        let r = pair(Some("NOPE".into()), None);
        let e = r
            .resolve("sources[0].admin_key", Path::new("/"), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources[0].admin_key_env"), "{e}");
        assert!(e.contains("NOPE"), "{e}");
    }

    #[test]
    fn file_is_trimmed_and_relative_to_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "s3cret\n").unwrap();
        let r = pair(None, Some("k".into()));
        let e = env(&[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
        let s = r.resolve_required("a", Path::new("/nowhere"), &e).unwrap();
        assert_eq!(s.expose_secret(), "s3cret");
    }

    #[test]
    fn both_given_is_an_error() {
        let r = pair(Some("K".into()), Some("f".into()));
        assert!(r.resolve("a", Path::new("/"), &env(&[("K", "v")])).is_err());
    }

    #[test]
    fn resolved_secrets_are_redacted_from_any_text() {
        let r = pair(Some("K".into()), None);
        let e = env(&[("K", "sk-ant-admin01-redact-me-42")]);
        r.resolve_required("a", Path::new("/"), &e).unwrap();
        let hook = env(&[("K", "whsec_UmVkYWN0TWVUb28=")]);
        r.resolve_required("b", Path::new("/"), &hook).unwrap();
        assert_eq!(
            redact("401: invalid x-api-key sk-ant-admin01-redact-me-42 (UmVkYWN0TWVUb28=)"),
            "401: invalid x-api-key [REDACTED] ([REDACTED])"
        );
        assert!(matches!(redact("nothing secret"), Cow::Borrowed(_)));
    }

    #[test]
    fn empty_secret_is_an_error() {
        let r = pair(Some("K".into()), None);
        let e = r
            .resolve("a", Path::new("/"), &env(&[("K", "\n")]))
            .unwrap_err();
        assert!(e.to_string().contains("empty"));
    }
}
