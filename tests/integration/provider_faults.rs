//! Provider faults: a server that never answers, a body trickling at 1 byte/s, a 50 MB body,
//! wrong field types, an HTML error page, a rejected admin key and long runs of 429. Each poll
//! ends in bounded time and memory, stores nothing wrong, and says what happened.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_anthropic::{KEYS_PATH, USAGE_PATH};
use crate::helpers::{row, spawn_app, this_hour, TestApp, HOUR};

/// What one `keywatch run --once` did: its output, wall time and peak resident memory.
struct Measured {
    code: Option<i32>,
    stderr: String,
    took: Duration,
    peak_rss_kib: u64,
}

async fn run_once_measured(app: &TestApp) -> Measured {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"));
    cmd.arg("--config")
        .arg(&app.config_path)
        .args(["run", "--once"])
        .envs(&app.env)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Measured {
        code: status.code(),
        stderr: reader.await.unwrap(),
        took: started.elapsed(),
        peak_rss_kib: peak,
    }
}

/// A loopback server that hands each connection to `serve`; returns its base URL.
async fn raw_server<F, Fut>(serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    url
}

async fn read_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
}

/// A test app pointed at `base_url`, one retry per request.
async fn app_at(base_url: Option<&str>) -> TestApp {
    let app = spawn_app().await;
    app.fake.add_usage(
        this_hour() - 5 * HOUR,
        row(Some("apikey_01A"), "claude-sonnet-4-20250514", 10, 1),
    );
    let mut text = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replace("retries = 3", "retries = 1");
    if let Some(url) = base_url {
        text = text.replace(&app.fake.uri(), url);
    }
    std::fs::write(&app.config_path, text).unwrap();
    app
}

fn report(name: &str, m: &Measured) {
    println!(
        "provider fault {name}: exit {:?} after {:.1} s, peak RSS {} MiB",
        m.code,
        m.took.as_secs_f64(),
        m.peak_rss_kib / 1024
    );
}

#[tokio::test]
async fn a_server_that_never_answers_or_trickles_is_given_up_on_in_bounded_time() {
    let hang = raw_server(|mut s| async move {
        read_request(&mut s).await;
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    })
    .await;
    let trickle = raw_server(|mut s| async move {
        read_request(&mut s).await;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..4096 {
            if s.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    for (name, url) in [("never answers", hang), ("1 byte/s", trickle)] {
        let app = app_at(Some(&url)).await;
        let m = run_once_measured(&app).await;
        report(name, &m);
        assert_eq!(m.code, Some(75), "{name}: {}", m.stderr);
        assert!(
            m.stderr.contains("no answer within 2s"),
            "{name}: {}",
            m.stderr
        );
        assert!(m.took < Duration::from_secs(20), "{name}: {:?}", m.took);
        assert!(!m.stderr.contains("panicked"));
    }
}

#[tokio::test]
async fn a_50_mb_body_is_refused_without_holding_it_in_memory() {
    let chunk = vec![b' '; 64 * 1024];
    let huge = raw_server(move |mut s| {
        let chunk = chunk.clone();
        async move {
            read_request(&mut s).await;
            // No content-length: the size is only known by reading.
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..800 {
                if s.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let app = app_at(Some(&huge)).await;
    let m = run_once_measured(&app).await;
    report("50 MB body", &m);
    assert_eq!(m.code, Some(75), "{}", m.stderr);
    assert!(
        m.stderr
            .contains("response body larger than 32 MiB (poll.max_page_mib)"),
        "{}",
        m.stderr
    );
    assert!(
        m.peak_rss_kib < 120 * 1024,
        "peak RSS {} KiB",
        m.peak_rss_kib
    );

    // With a declared length the body is refused before it is read.
    let app = app_at(None).await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; 50 * 1024 * 1024]))
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    let m = run_once_measured(&app).await;
    report("50 MB body with content-length", &m);
    assert_eq!(m.code, Some(75), "{}", m.stderr);
    assert!(
        m.stderr.contains("response body larger than"),
        "{}",
        m.stderr
    );
}

#[tokio::test]
async fn wrong_types_truncated_json_and_html_pages_fail_the_poll_with_what_was_wrong() {
    let bucket = |results: Value| {
        json!({"data": [{"starting_at": "2026-11-20T00:00:00Z", "ending_at": "2026-11-20T01:00:00Z",
               "results": results}], "has_more": false, "next_page": null})
    };
    let cases = [
        ("a string for a count", ResponseTemplate::new(200).set_body_json(bucket(json!([{"uncached_input_tokens": "lots"}]))), "invalid type: string \"lots\", expected u64"),
        ("a negative count", ResponseTemplate::new(200).set_body_json(bucket(json!([{"output_tokens": -5}]))), "invalid value: integer `-5`"),
        ("results as an object", ResponseTemplate::new(200).set_body_json(bucket(json!({"a": 1}))), "expected a sequence"),
        ("a bad timestamp", ResponseTemplate::new(200).set_body_json(json!({"data": [{"starting_at": "yesterday", "ending_at": "2026-11-20T01:00:00Z"}], "has_more": false})), "input contains invalid characters"),
        ("truncated JSON", ResponseTemplate::new(200).set_body_string(r#"{"data": [{"starting_at": "2026-11-20T00:0"#), "EOF while parsing"),
        ("an HTML error page", ResponseTemplate::new(502).set_body_string("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"), "HTTP 502: <html><head><title>502 Bad Gateway"),
    ];
    for (name, response, expected) in cases {
        let app = app_at(None).await;
        Mock::given(method("GET"))
            .and(path(USAGE_PATH))
            .respond_with(response)
            .with_priority(1)
            .mount(&app.fake.server)
            .await;
        let m = run_once_measured(&app).await;
        assert_eq!(m.code, Some(75), "{name}: {}", m.stderr);
        assert!(m.stderr.contains(expected), "{name}: {}", m.stderr);
        assert!(!m.stderr.contains("panicked"), "{name}: {}", m.stderr);
        assert!(app.stored_rows().await.is_empty(), "{name}");
        assert_eq!(app.cursor().await, None, "{name}");
    }
}

#[tokio::test]
async fn a_rejected_admin_key_raises_source_unhealthy_at_once_without_a_retry_storm() {
    let app = app_at(None).await;
    let rejected = ResponseTemplate::new(401).set_body_json(json!({"type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}));
    // A rejected key is rejected everywhere (the cost report too, so the analytics API behind
    // it is never reached).
    for p in [KEYS_PATH, USAGE_PATH, crate::fake_anthropic::COST_PATH] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(rejected.clone())
            .with_priority(1)
            .mount(&app.fake.server)
            .await;
    }
    for run in 1..=2 {
        let m = run_once_measured(&app).await;
        assert_eq!(m.code, Some(75), "{}", m.stderr);
        assert!(m.stderr.contains("HTTP 401"), "{}", m.stderr);
        let requests = app.fake.server.received_requests().await.unwrap().len();
        assert!(
            requests <= 3 * run,
            "{requests} requests after {run} runs: no retries on 401"
        );
    }
    let alerts: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let unhealthy: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "source_unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "{alerts:#?}");
    let summary = unhealthy[0]["summary"].as_str().unwrap();
    assert!(summary.contains("rejected the admin key"), "{summary}");
    assert!(summary.contains("HTTP 401"), "{summary}");
    // The status is kept as a value beside the message: the rule reads it, not the text.
    let store = app.store().await;
    for stream in [
        keywatch::store::usage_stream(HOUR),
        keywatch::store::KEYS_STREAM.to_owned(),
    ] {
        let s = store.poll_state("anthropic-test", &stream).await.unwrap();
        assert_eq!(s.last_status, Some(401), "{stream}: {s:?}");
    }
    store.close().await;
}

#[tokio::test]
async fn long_runs_of_429_are_retried_as_told_then_left_for_the_next_poll() {
    let app = app_at(None).await;
    let slow_down = |after: &str| {
        ResponseTemplate::new(429)
            .insert_header("retry-after", after)
            .set_body_json(json!({"type": "error",
                "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}}))
    };
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(slow_down("1"))
        .up_to_n_times(100)
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    let m = run_once_measured(&app).await;
    report("429 x many, retry-after 1", &m);
    assert_eq!(m.code, Some(75), "{}", m.stderr);
    let usage_requests =
        |reqs: Vec<wiremock::Request>| reqs.iter().filter(|r| r.url.path() == USAGE_PATH).count();
    // retries = 1: two attempts a second apart, then the poll gives up until the next one.
    assert_eq!(
        usage_requests(app.fake.server.received_requests().await.unwrap()),
        2
    );
    assert!(
        m.took >= Duration::from_secs(1) && m.took < Duration::from_secs(10),
        "{:?}",
        m.took
    );

    // A retry-after beyond a minute is not waited out inside the poll.
    let app = app_at(None).await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(slow_down("3600"))
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    let m = run_once_measured(&app).await;
    assert_eq!(m.code, Some(75), "{}", m.stderr);
    assert_eq!(
        usage_requests(app.fake.server.received_requests().await.unwrap()),
        1
    );
    assert!(m.took < Duration::from_secs(5), "{:?}", m.took);
}
