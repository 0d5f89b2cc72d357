#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| keywatch::fuzzing::provider_responses(data));
