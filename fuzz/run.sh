#!/usr/bin/env bash
# Run the kvp-format fuzz target without cargo-fuzz (same flags cargo-fuzz uses), e.g.
#   bash fuzz/run.sh 60          # fuzz for 60 seconds
# With cargo-fuzz installed, `cargo +nightly fuzz run read_write_reread` does the same.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps the sanitizer flags away from build scripts and proc macros.
cargo +nightly build --release --target "$triple" --bin read_write_reread
corpus=corpus/read_write_reread
mkdir -p "$corpus" artifacts
cp ../crates/kvp-format/tests/data/crashers/*.bin "$corpus"/
find ../crates/kvp-format/tests/data/valid ../crates/kvp-format/tests/data/invalid -name '*.KVP' |
  while read -r f; do cp "$f" "$corpus/$(printf '%s' "$f" | sha1sum | cut -c1-12).kvp"; done
"target/$triple/release/read_write_reread" "$corpus" -artifact_prefix=artifacts/ \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
