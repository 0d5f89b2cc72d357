//! Process exit codes (docs/contract.md): sysexits where one fits.

/// Success.
pub const OK: u8 = 0;
/// Anything else that went wrong.
pub const FAILURE: u8 = 1;
/// EX_TEMPFAIL: a poll or delivery failed and was kept for the next run.
pub const TEMPFAIL: u8 = 75;
/// EX_CONFIG: the configuration is invalid.
pub const CONFIG: u8 = 78;
