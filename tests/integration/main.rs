//! Integration tests: one binary, one module per behaviour.

mod fake_anthropic;
mod fake_openai;
mod fuzz_corpus;
mod helpers;
mod minute_corpus;
mod receivers;

mod cli;
mod config_check;
mod crash;
mod daemon;
mod dashboard;
mod day_cache;
mod defects_http;
mod defects_lead;
mod defects_output;
mod defects_poller;
mod defects_report;
mod defects_store;
mod detection;
mod minute_spike;
mod money;
mod notifier_faults;
mod notify;
mod openai;
mod outbox;
mod paging;
mod poll;
mod provider_faults;
mod quality;
mod report;
mod retention;
mod rollup;
mod secrets;
mod storage;
mod tls;
