//! TLS certificate verification is always on: a provider or SMTP server with a self-signed
//! certificate is refused, and the error says why. (No config key turns verification off.)
//! The TLS server is `openssl s_server`, skipped with a note where openssl is missing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::spawn_app_with;
use crate::notify::seed;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TLS server with a fresh self-signed certificate for 127.0.0.1; `None` without openssl.
async fn self_signed_server(dir: &std::path::Path) -> Option<(Server, u16)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("openssl is not available: TLS verification test skipped");
        return None;
    }
    let port = crate::daemon::free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child);
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((server, port));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn self_signed_certificates_are_refused_for_providers_and_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, port)) = self_signed_server(dir.path()).await else {
        return;
    };
    let app = spawn_app_with(&format!(
        "[delivery]\ntimeout = \"5s\"\n[[notifiers]]\nname = \"mail\"\nkind = \"email\"\n\
         smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"tls\"\n\
         from = \"keywatch@example.com\"\nto = [\"oncall@example.com\"]\n"
    ))
    .await;
    seed(&app);
    // First the provider: pointed at the TLS server, the poll fails on the certificate.
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let pointed = text.replace(&app.fake.uri(), &format!("https://127.0.0.1:{port}"));
    std::fs::write(&app.config_path, &pointed).unwrap();
    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // Then SMTP over TLS: the notification stays pending with a certificate error.
    std::fs::write(&app.config_path, &text).unwrap();
    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("notification failed; will retry"),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}

#[test]
fn no_code_path_turns_certificate_verification_off() {
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for forbidden in [
                "danger_accept_invalid",
                "dangerous_accept_invalid",
                "NoCertificateVerification",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} uses {forbidden}",
                    path.display()
                );
            }
        }
    }
}
