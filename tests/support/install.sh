#!/usr/bin/env bash
# Installs the servers the tests run against, on Debian 12 as root with only the package
# registries reachable. Idempotent: quick (well under a second) when everything is there.
#
#   - OpenSSH server (Debian's openssh-server) for the SFTP backend. Only its binary is used:
#     servers.sh runs its own sshd with its own config, host key and port on 127.0.0.1. The
#     system sshd service is never started by this script (policy-rc.d during the install).
#   - moto's S3 server (PyPI) for the S3 backend: ready in under a second, real 412s for
#     conditional puts, multipart support. Into the current python3 if it can take packages,
#     else into a venv at $PAYBATCH_TEST_VENV (default ~/.cache/paybatch/test-venv).
#   - strace (Debian's), for the ledger test that checks every acknowledged write is
#     fdatasynced before the call returns.
#   - Chromium (Debian's `chromium`), headless, for the test that loads `paybatch serve`'s
#     status page in a real browser (tests/serve.rs).
#   - PostgreSQL (Debian's `postgresql`) for the shared ledger (crates/ledger-postgres). Only
#     its binaries are used: servers.sh runs its own cluster (initdb in a temporary directory,
#     its own port on 127.0.0.1) as the `postgres` user; the system's cluster is never started
#     by this script (policy-rc.d during the install).
#   - a login `paybatch-sftp` (no shell) for the password-auth tests; servers.sh gives it a
#     fresh random password while the servers run and locks it again on stop.
set -euo pipefail

MOTO_VERSION=5.2.1
FLASK_VERSION=3.1.3
FLASK_CORS_VERSION=6.0.2
VENV=${PAYBATCH_TEST_VENV:-$HOME/.cache/paybatch/test-venv}
PW_USER=paybatch-sftp

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: $1 needs root (run it as root, or install it yourself)" >&2
    exit 1
  fi
}

# --- OpenSSH server -------------------------------------------------------------------------
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null || ! command -v pkill >/dev/null ||
   ! command -v strace >/dev/null; then
  need_root "installing openssh-server and strace"
  echo "install.sh: apt-get install openssh-server procps strace"
  # Keep the system's sshd service from being started by the package's postinst.
  policy=/usr/sbin/policy-rc.d
  created_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=yes
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # procps: servers.sh stops sshd's per-connection processes with pkill -P.
  # strace: the ledger's durability test watches its fdatasync calls.
  apt-get install -y -qq --no-install-recommends openssh-server procps strace >/dev/null
  if [ "$created_policy" = yes ]; then rm -f "$policy"; fi
fi

# --- PostgreSQL (the shared ledger's tests) ---------------------------------------------------
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_root "installing postgresql"
  echo "install.sh: apt-get install postgresql"
  policy=/usr/sbin/policy-rc.d
  created_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=yes
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  if [ "$created_policy" = yes ]; then rm -f "$policy"; fi
fi
# initdb refuses to run as root: the cluster runs as `postgres` (the package creates it).
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --create-home --shell /bin/sh postgres
fi

# --- Chromium (headless, for the status page test) ---------------------------------------------
if ! command -v chromium >/dev/null; then
  need_root "installing chromium"
  echo "install.sh: apt-get install chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# --- moto S3 server ---------------------------------------------------------------------------
moto_ok() {
  "$1" - <<EOF 2>/dev/null
import moto, flask, flask_cors
assert moto.__version__ == "$MOTO_VERSION", moto.__version__
EOF
}

if [ -x "$VENV/bin/python" ] && moto_ok "$VENV/bin/python"; then
  :
elif command -v python3 >/dev/null && moto_ok python3 && command -v moto_server >/dev/null; then
  :
else
  pkgs=("moto[s3]==$MOTO_VERSION" "flask==$FLASK_VERSION" "flask-cors==$FLASK_CORS_VERSION")
  if ! command -v python3 >/dev/null; then
    need_root "installing python3"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
  fi
  echo "install.sh: pip install ${pkgs[*]}"
  # Debian's python3 refuses system-wide pip installs (PEP 668): use a venv there.
  if python3 -m pip --version >/dev/null 2>&1 &&
     python3 -m pip install -q "${pkgs[@]}" 2>/dev/null && moto_ok python3 &&
     command -v moto_server >/dev/null; then
    :
  else
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      need_root "installing python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "${pkgs[@]}"
    moto_ok "$VENV/bin/python"
  fi
fi

# --- password-auth test user --------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && ! id "$PW_USER" >/dev/null 2>&1; then
  useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$PW_USER"
  usermod -p '*' "$PW_USER"   # no password until servers.sh sets one
fi

echo "install.sh: openssh-server $(dpkg-query -W -f='${Version}' openssh-server 2>/dev/null || echo '?'), postgresql $(dpkg-query -W -f='${Version}' postgresql 2>/dev/null || echo '?'), chromium $(dpkg-query -W -f='${Version}' chromium 2>/dev/null || echo '?'), moto $MOTO_VERSION: ready"
