//! Reading a secret from a file without trusting the file: only a regular file (a FIFO would
//! block the read forever, `/dev/zero` would be read until memory runs out), and at most
//! [`MAX_SECRET_BYTES`].

use std::io::Read;
use std::path::Path;

/// The largest secret file read: far above any key or password, far below any harm.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Why a secret file was not read.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is not a regular file (a FIFO, device, socket or folder); point it at the file holding the secret")]
    NotAFile,
    #[error("it is larger than {MAX_SECRET_BYTES} bytes, which no secret is; point it at the file holding only the secret")]
    TooLarge,
    #[error("it is not UTF-8 text")]
    NotText,
}

/// The file's text. The type is checked before opening (opening a FIFO for reading blocks until
/// a writer comes) and again on the open file.
pub fn read(path: &Path) -> Result<String, SecretFileError> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(SecretFileError::NotAFile);
    }
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(SecretFileError::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretFileError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| SecretFileError::NotText)
}
