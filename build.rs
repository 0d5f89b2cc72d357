//! Stamps the commit the binary is built from into `KEYWATCH_COMMIT` (`keywatch --version`,
//! `keywatch_build_info{commit}`): `$KEYWATCH_COMMIT` when set (builds from a tarball), else
//! `git rev-parse`, else "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KEYWATCH_COMMIT");
    let commit = std::env::var("KEYWATCH_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KEYWATCH_COMMIT={}", commit.trim());
    // Rebuild when HEAD moves (a commit, a checkout); only files that exist, or cargo would
    // rebuild every time.
    let head = Path::new(".git/HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Some(reference) = std::fs::read_to_string(head)
            .ok()
            .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
        {
            let path = Path::new(".git").join(reference);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            // A branch whose ref was packed moves in packed-refs.
            if Path::new(".git/packed-refs").exists() {
                println!("cargo:rerun-if-changed=.git/packed-refs");
            }
        }
    }
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
}
