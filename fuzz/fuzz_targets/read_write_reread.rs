//! Read any bytes as a KVP file, write the records back canonically, re-read them (must give
//! the same records), re-write (must be byte-identical), convert to every typed kind and
//! validate under every file kind: nothing may panic. The property lives in the crate's
//! test support so the proptest and the crashers-corpus test check exactly the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/kvp-format/tests/support/roundtrip.rs"]
mod roundtrip;

fuzz_target!(|data: &[u8]| roundtrip::check(data));
