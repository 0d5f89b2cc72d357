//! `check-config` on the shipped example and on a broken file.

use std::path::Path;

fn keywatch(config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keywatch"));
    cmd.arg("--config").arg(config).arg("check-config");
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-EXAMPLE-secret-value"),
    ("KEYWATCH_SMTP_USER", "smtp-user-secret-value"),
    ("KEYWATCH_SMTP_PASSWORD", "smtp-password-secret-value"),
    (
        "KEYWATCH_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
];

#[test]
fn the_shipped_example_config_passes_and_its_summary_holds_no_secret() {
    let out = keywatch(Path::new("config.example.toml"), EXAMPLE_ENV);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("source    anthropic-prod"), "{stdout}");
    assert!(stdout.contains("env $ANTHROPIC_ADMIN_KEY"), "{stdout}");
    for (_, secret) in EXAMPLE_ENV {
        assert!(!stdout.contains(secret), "check-config printed a secret");
    }
}

#[test]
fn the_example_config_without_its_secrets_names_the_missing_variable() {
    let out = keywatch(Path::new("config.example.toml"), &[]);

    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sources[0].admin_key_env"), "{stderr}");
    assert!(stderr.contains("ANTHROPIC_ADMIN_KEY"), "{stderr}");
}

#[test]
fn an_invalid_config_exits_78_and_names_the_key() {
    let out = keywatch(Path::new("tests/data/invalid.toml"), &[]);

    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("poll.intervall"), "{stderr}");
}

#[test]
fn a_missing_config_file_exits_78_and_says_how_to_point_at_one() {
    let out = keywatch(Path::new("/nonexistent/keywatch.toml"), &[]);

    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn a_config_readable_or_writable_by_other_users_warns_and_a_private_one_does_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    std::fs::copy("config.example.toml", &path).unwrap();
    let warnings = |mode: u32| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = keywatch(&path, EXAMPLE_ENV);
        assert_eq!(out.status.code(), Some(0));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            all.contains("is readable by every user") && all.contains("chmod o-r"),
            all.contains("is writable by every user"),
        )
    };
    assert_eq!(warnings(0o644), (true, false));
    assert_eq!(warnings(0o666), (true, true));
    assert_eq!(warnings(0o640), (false, false));
    assert_eq!(warnings(0o600), (false, false));
}

/// #13.26: the summary speaks the config's own words, and errors found after parsing name the
/// line as parse errors do.
#[test]
fn the_summary_uses_the_configs_words_and_sense_check_errors_name_the_line() {
    let out = keywatch(Path::new("config.example.toml"), EXAMPLE_ENV);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("lookback 8d,"), "{stdout}");
    assert!(stdout.contains("metric cost,"), "{stdout}");
    assert!(stdout.contains("webhook (json)"), "{stdout}");
    for internal in ["8days", "Cost", "Json", "Daily"] {
        assert!(!stdout.contains(internal), "{internal}: {stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    let text = std::fs::read_to_string("config.example.toml").unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("timezone = \"Europe/Berlin\""))
        .unwrap()
        + 1;
    std::fs::write(
        &path,
        text.replacen(
            "timezone = \"Europe/Berlin\"",
            "timezone = \"Mars/Olympus\"",
            1,
        ),
    )
    .unwrap();
    let out = keywatch(&path, EXAMPLE_ENV);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("line {line}: budgets[0].timezone")),
        "{stderr}"
    );
}

/// #13.24: a secret file that is a FIFO used to hang `check-config`, and `/dev/zero` was read
/// until memory ran out; read-only commands needed every notifier's secret.
#[test]
fn secret_files_that_are_not_regular_files_are_refused_and_read_commands_need_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    let text = std::fs::read_to_string("config.example.toml").unwrap();
    let fifo = dir.path().join("admin-key.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = dir.path().join("big.key");
    std::fs::write(&big, vec![b'k'; 100_000]).unwrap();
    for file in [fifo.as_path(), Path::new("/dev/zero"), big.as_path()] {
        std::fs::write(
            &path,
            text.replacen(
                "admin_key_env = \"ANTHROPIC_ADMIN_KEY\"",
                &format!("admin_key_file = \"{}\"", file.display()),
                1,
            ),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let out = keywatch(&path, EXAMPLE_ENV);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(78));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("sources[0].admin_key_file"), "{stderr}");
        assert!(
            stderr.contains("not a regular file") || stderr.contains("larger than"),
            "{stderr}"
        );
    }

    // No secret set at all: reading commands work, `run` still names what is missing.
    std::fs::write(&path, &text).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
            .arg("--config")
            .arg(&path)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("ANTHROPIC_ADMIN_KEY")
            .output()
            .unwrap()
    };
    let out = run(&["silence", "--rule", "spike", "--reason", "maintenance"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [&["alerts"][..], &["report"][..], &["silences"][..]] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ANTHROPIC_ADMIN_KEY"));
}

/// #13.18: a bidi override in a name reached the terminal raw through a config error; every
/// config error now has one shape, `config error in FILE: …`, with such characters escaped.
#[test]
fn config_errors_have_one_shape_and_show_no_raw_bidi_override() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    let source = "[[sources]]\nname = \"prod\u{202e}txt\"\nprovider = \"anthropic\"\nadmin_key_env = \"ANTHROPIC_ADMIN_KEY\"\n";
    std::fs::write(&path, format!("{source}{source}")).unwrap();
    let out = keywatch(&path, EXAMPLE_ENV);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\u{202e}'), "{stderr}");
    assert!(stderr.contains("sources[1].name"), "{stderr}");
    let shape = format!("keywatch: config error in {}: line ", path.display());
    assert!(stderr.starts_with(&shape), "{stderr}");

    std::fs::write(&path, "[poll\n").unwrap();
    let stderr = String::from_utf8_lossy(&keywatch(&path, EXAMPLE_ENV).stderr).into_owned();
    assert!(stderr.starts_with(&shape), "{stderr}");
}
