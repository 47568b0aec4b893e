#!/usr/bin/env bash
# start|stop the test servers (filled in by the storage-backends work).
set -euo pipefail
mkdir -p target/test-servers
case "${1:-}" in
  start) : > target/test-servers/env ;;
  stop) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
