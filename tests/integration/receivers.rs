//! Real receivers for notifications: an HTTP endpoint (wiremock) that verifies Standard Webhooks
//! signatures with the `standardwebhooks` crate, and an in-process SMTP server (mailin).

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: Option<String>,
    /// Whether the Standard Webhooks signature verified.
    pub signed: bool,
    pub body: Value,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct HookState {
    received: Vec<Received>,
    /// Answer 503 to this many more requests.
    fail_next: usize,
    /// How long each answer takes (the request is recorded on arrival).
    delay: std::time::Duration,
}

pub struct WebhookReceiver {
    pub server: MockServer,
    state: Arc<Mutex<HookState>>,
}

struct Recorder(Arc<Mutex<HookState>>);

impl Respond for Recorder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let verifier = standardwebhooks::Webhook::new(WEBHOOK_SECRET).unwrap();
        let signed = verifier.verify(&req.body, &req.headers).is_ok();
        let mut state = self.0.lock().unwrap();
        let status = if state.fail_next > 0 {
            state.fail_next -= 1;
            503
        } else {
            200
        };
        state.received.push(Received {
            webhook_id: req
                .headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            signed,
            body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
            status,
        });
        ResponseTemplate::new(status).set_delay(state.delay)
    }
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(HookState::default()));
        Mock::given(method("POST"))
            .respond_with(Recorder(Arc::clone(&state)))
            .mount(&server)
            .await;
        Self { server, state }
    }

    pub fn url(&self) -> String {
        format!("{}/hook", self.server.uri())
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The POSTs answered with success.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Makes every answer take `delay`, so a sender can die between its POST and the answer.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
struct SmtpHandler {
    mails: Arc<Mutex<Vec<Mail>>>,
    reject_rcpt: bool,
    current: Option<Mail>,
}

impl mailin_embedded::Handler for SmtpHandler {
    fn rcpt(&mut self, _to: &str) -> mailin_embedded::Response {
        if self.reject_rcpt {
            mailin_embedded::response::NO_MAILBOX
        } else {
            mailin_embedded::response::OK
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.current = Some(Mail {
            from: from.to_owned(),
            to: to.to_vec(),
            data: String::new(),
        });
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = &mut self.current {
            m.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        if let Some(m) = self.current.take() {
            self.mails.lock().unwrap().push(m);
        }
        mailin_embedded::response::OK
    }
}

/// An SMTP server on 127.0.0.1 (plain, no TLS), serving until the test process ends.
pub struct SmtpServer {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub fn start(reject_rcpt: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let handler = SmtpHandler {
            mails: Arc::clone(&mails),
            reject_rcpt,
            current: None,
        };
        std::thread::spawn(move || {
            let mut server = mailin_embedded::Server::new(handler);
            server
                .with_name("smtp.test")
                .with_num_threads(2)
                .with_tcp_listener(listener);
            let _ = server.serve();
        });
        Self { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}
