#!/usr/bin/env python3
"""Whole-process `paybatch validate` against Python's `urllib.parse.parse_qsl`, line by line,
over the same generated REQUEST file, measured in one run on the same machine.

    cargo build --release --bin paybatch
    python3 scripts/bench_validate_vs_python.py            # 300,000 lines, best of 3
    python3 scripts/bench_validate_vs_python.py --lines 1000000 --runs 5

The file has the layout of crates/kvp-format/benches (~250 bytes a line, canonical encoding,
some values with escapes). Python only parses (no checks at all), so the ratio understates
what the same validation would cost in Python. Both sides are timed as whole processes
(interpreter or binary start-up, reading the file, the work), best of N wall-clock runs.
The target (crates/kvp-format/README.md) is a ratio of at least 25.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

PYTHON_PARSER = r"""
import sys
from urllib.parse import parse_qsl
pairs = 0
with open(sys.argv[1], "rb") as f:
    for raw in f:
        line = raw.rstrip(b"\r\n").decode("utf-8")
        pairs += len(parse_qsl(line, keep_blank_values=True, strict_parsing=False))
print(pairs)
"""

NAMES = ["John Smith", "Zoë O'Brien & Co", "ACME/Widgets", "Mary-Jane Watson", "Li Wei"]
STREETS = ["1 Main St", "221B Baker Street", "Via dell'Orso 7"]


def enc(s: str) -> str:
    # The canonical rule: everything outside A-Z a-z 0-9 - . _ ~ as %XX.
    return quote(s, safe="-._~")


def generate(path: str, lines: int, sequence: int) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for i in range(lines):
            pairs = [
                ("xIndex", str(i)),
                ("xSequenceNumber", str(sequence)),
                ("xKey", "ifields_pbtest_7f3a9c"),
                ("xVersion", "5.0.0"),
                ("xSoftwareName", "paybatch"),
                ("xCommand", "cc:sale"),
                ("xCardNum", "41111111%08d" % (i % 100_000_000)),
                ("xExp", "1230"),
                ("xAmount", "%d.%02d" % (1 + i % 500, i % 100)),
                ("xName", NAMES[i % 5]),
                ("xStreet", STREETS[i % 3]),
                ("xZip", "10001"),
                ("xInvoice", "INV-%08d" % i),
            ]
            f.write("&".join(f"{enc(k)}={enc(v)}" for k, v in pairs))
            f.write("\n")


def best_of(runs: int, argv: list[str], expect_ok: bool = True) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if expect_ok and done.returncode != 0:
            sys.exit(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode()}")
        best = min(best, elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--paybatch", default=os.path.join("target", "release", "paybatch"))
    args = ap.parse_args()
    if not os.path.exists(args.paybatch):
        sys.exit(f"{args.paybatch} not found: run `cargo build --release --bin paybatch` first")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "REQUEST_42.KVP")
        generate(path, args.lines, 42)
        size = os.path.getsize(path)
        rust = best_of(args.runs, [args.paybatch, "validate", "-q", "--no-beside", path])
        python = best_of(args.runs, [sys.executable, "-c", PYTHON_PARSER, path])
    mb = size / 1e6
    print(f"file: {args.lines} lines, {mb:.1f} MB ({size / args.lines:.0f} bytes/line); best of {args.runs}")
    print(f"paybatch validate        {rust:8.3f} s  {mb / rust:8.1f} MB/s")
    print(f"python parse_qsl by line {python:8.3f} s  {mb / python:8.1f} MB/s")
    print(f"ratio: paybatch validate is {python / rust:.1f}x faster (target: >= 25x)")


if __name__ == "__main__":
    main()
