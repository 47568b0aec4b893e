#!/usr/bin/env bash
# Installs the servers the tests run against (filled in by the storage-backends work).
set -euo pipefail
