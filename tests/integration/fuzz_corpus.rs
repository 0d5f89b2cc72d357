//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, minimised after each fuzzing run, plus
//! anything a run once found in `fuzz/regressions/<target>/`) through the same harnesses the
//! fuzz targets call, so what fuzzing found stays fixed without libFuzzer.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "{} fails {target}", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn the_fuzz_corpus_replays_without_a_failure() {
    let provider = replay("provider_responses", keywatch::fuzzing::provider_responses);
    let config = replay("config", keywatch::fuzzing::config);
    let times = replay("times", keywatch::fuzzing::times);
    assert!(
        provider >= 7 && config >= 2 && times >= 4,
        "{provider} {config} {times}"
    );
}
