#!/usr/bin/env bash
# Starts and stops the test servers on 127.0.0.1 (install them first with install.sh).
#
#   servers.sh start              start sshd + moto (or keep them if already answering) and
#                                 write target/test-servers/env (export lines for the tests)
#   servers.sh stop               stop them (pid files, and sshd's per-connection children)
#   servers.sh status             say what runs
#   servers.sh sshd start NAME [PORT]   an extra sshd (same keys and users) for fault tests;
#                                 prints its port. Reusing PORT restarts it where it was.
#   servers.sh sshd stop NAME     stop that extra sshd and its connections
#   servers.sh sshd pause|resume NAME   freeze / thaw it and its connections (a hung server)
#   servers.sh pg stop|start|crash      stop PostgreSQL cleanly, start it again on its port, or
#                                 kill it like a crash (`pg_ctl -m immediate`: no checkpoint)
#                                 — for the "database restarted mid-run" tests
#
# PostgreSQL (the shared ledger's tests) runs as the `postgres` user (initdb refuses root) in
# its own cluster: data, log and Unix socket in pg/ under the state directory when that user
# can reach it, else in a temporary directory under /tmp (named in pg.dir); port picked free,
# 127.0.0.1 only, trust authentication (loopback tests only), fsync on; after a crash it syncs
# its files with one syncfs instead of an fsync per file (recovery_init_sync_method: with the
# hundreds of databases the tests create, per-file fsyncs made a restart take 20 s). The env file exports
# PAYBATCH_TEST_PG_URL (the cluster's `postgres` database: the tests create a fresh database
# each) and PAYBATCH_TEST_SERVERS_DIR (so a test can run `servers.sh pg crash|start`).
#
# State lives under target/test-servers/: sshd config, host and client keys, known_hosts, pid
# files, logs, the SFTP base folder (sftp/) and the env file. Ports are picked free each start.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STATE="${PAYBATCH_TEST_SERVERS_DIR:-$ROOT/target/test-servers}"
# Only the default state directory manages the password-auth test user (one password per
# machine); an instance under PAYBATCH_TEST_SERVERS_DIR leaves it alone.
PRIMARY=$([ -z "${PAYBATCH_TEST_SERVERS_DIR:-}" ] && echo yes || echo no)
SSH_DIR="$STATE/ssh"
VENV=${PAYBATCH_TEST_VENV:-$HOME/.cache/paybatch/test-venv}
BUCKET=paybatch-test
PW_USER=paybatch-sftp

log() { echo "servers.sh: $*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the process in pid file $1 and its descendants (sshd's per-connection processes).
stop_pidfile() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    # Freeze the listener first: otherwise a client reconnects between the killing of the
    # per-connection children and of the listener, and its new child outlives the stop.
    kill -STOP "$pid" 2>/dev/null || true
    local kids kid
    kids=$(descendants "$pid")
    for kid in $kids; do
      kill -TERM "$kid" 2>/dev/null || true
      kill -CONT "$kid" 2>/dev/null || true   # in case a pause left it stopped
    done
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Waits until something on 127.0.0.1:$1 answers with a line starting with $2 (or just accepts
# the connection when $2 is empty).
wait_port() {
  local port=$1 banner=$2 what=$3
  for _ in $(seq 100); do
    if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      if [ -z "$banner" ]; then exec 3>&-; return 0; fi
      local line=""
      read -r -t 2 line <&3 || true
      exec 3>&-
      case "$line" in "$banner"*) return 0 ;; esac
    fi
    sleep 0.1
  done
  die "$what on port $port did not answer (see $STATE/*.log)"
}

moto_cmd() {
  if [ -x "$VENV/bin/moto_server" ]; then echo "$VENV/bin/moto_server"
  elif command -v moto_server >/dev/null; then command -v moto_server
  else die "moto_server not found: run tests/support/install.sh"; fi
}

keys() {
  mkdir -p "$SSH_DIR" "$STATE/sftp"
  chmod 700 "$SSH_DIR"
  [ -f "$SSH_DIR/host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C paybatch-test-host -f "$SSH_DIR/host_ed25519_key"
  [ -f "$SSH_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C paybatch-test-client -f "$SSH_DIR/id_ed25519"
  # A second, unauthorised client key and a foreign host key, for the "refused" tests.
  [ -f "$SSH_DIR/wrong_id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C paybatch-wrong-client -f "$SSH_DIR/wrong_id_ed25519"
  [ -f "$SSH_DIR/other_host_key" ] || ssh-keygen -q -t ed25519 -N '' -C paybatch-other-host -f "$SSH_DIR/other_host_key"
  [ -f "$SSH_DIR/id_rsa" ] || ssh-keygen -q -t rsa -b 3072 -N '' -C paybatch-test-rsa -f "$SSH_DIR/id_rsa"
  cat "$SSH_DIR/id_ed25519.pub" "$SSH_DIR/id_rsa.pub" > "$SSH_DIR/authorized_keys"
  chmod 600 "$SSH_DIR/authorized_keys"
}

# Writes the sshd config for instance $1 on port $2.
sshd_config() {
  local name=$1 port=$2
  cat > "$SSH_DIR/sshd_config.$name" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $SSH_DIR/host_ed25519_key
PidFile $SSH_DIR/sshd.$name.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers root $PW_USER
Subsystem sftp internal-sftp
MaxStartups 200:30:400
MaxSessions 200
MaxAuthTries 6
LoginGraceTime 20
ClientAliveInterval 15
LogLevel VERBOSE
Match User $PW_USER
  PasswordAuthentication yes
  ForceCommand internal-sftp
EOF
}

# Starts sshd instance $1 on port $2 and waits for its banner.
start_sshd() {
  local name=$1 port=$2
  mkdir -p /run/sshd
  sshd_config "$name" "$port"
  /usr/sbin/sshd -t -f "$SSH_DIR/sshd_config.$name" || die "sshd config rejected"
  /usr/sbin/sshd -f "$SSH_DIR/sshd_config.$name" -E "$STATE/sshd.$name.log"
  wait_port "$port" "SSH-2.0-" "sshd ($name)"
  echo "$port" > "$SSH_DIR/sshd.$name.port"
}

known_hosts_line() {
  local port=$1
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$SSH_DIR/host_ed25519_key.pub")"
}

set_password() {
  # A fresh password per start for the password-auth test user; stored for the tests only.
  # Kept while the servers run, so re-running start does not invalidate a sourced env.
  if [ "$PRIMARY" = yes ] && [ "$(id -u)" = 0 ] && id "$PW_USER" >/dev/null 2>&1 &&
     [ ! -s "$STATE/sftp-password" ]; then
    local pw
    pw=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
    echo "$PW_USER:$pw" | chpasswd
    ( umask 077; printf '%s' "$pw" > "$STATE/sftp-password" )
    mkdir -p "$STATE/sftp-pw"
    chown "$PW_USER" "$STATE/sftp-pw"
    chmod 700 "$STATE/sftp-pw"
  fi
}

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster's directory: pg/ under the state directory if the postgres user can write there
# (every parent must be searchable by it), else a temporary directory.
pg_dir() {
  if [ -f "$STATE/pg.dir" ] && [ -d "$(cat "$STATE/pg.dir")" ]; then cat "$STATE/pg.dir"; return; fi
  local dir="$STATE/pg"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  chmod 700 "$dir"
  if ! as_postgres test -w "$dir" 2>/dev/null; then
    rm -rf "$dir"
    dir=$(mktemp -d /tmp/paybatch-test-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  fi
  echo "$dir" > "$STATE/pg.dir"
  echo "$dir"
}

pg_alive() {
  local dir
  [ -f "$STATE/pg.dir" ] || return 1
  dir=$(cat "$STATE/pg.dir")
  [ -f "$dir/data/postmaster.pid" ] && kill -0 "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null
}

# Starts the cluster on port $1 (initdb first when there is none) and waits until it answers.
pg_start() {
  local port=$1 bin dir
  bin=$(pg_bin)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || die "postgresql missing: run tests/support/install.sh"
  dir=$(pg_dir)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-instructions >"$STATE/pg-initdb.log" 2>&1 ||
      die "initdb failed (see $STATE/pg-initdb.log)"
  fi
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c recovery_init_sync_method=syncfs" start >/dev/null ||
    die "postgres did not start (see $dir/log)"
  echo "$port" > "$STATE/pg.port"
}

pg_stop() {
  local mode=${1:-fast} dir bin
  pg_alive || return 0
  dir=$(cat "$STATE/pg.dir")
  bin=$(pg_bin)
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null || true
}

pg_control() {
  case "${1:-}" in
    stop) pg_stop fast ;;
    crash) pg_stop immediate ;;
    start)
      [ -f "$STATE/pg.port" ] || die "no PostgreSQL port recorded: run $0 start first"
      pg_alive || pg_start "$(cat "$STATE/pg.port")"
      ;;
    *) die "usage: $0 pg stop|start|crash" ;;
  esac
}

write_env() {
  local ssh_port=$1 s3_port=$2 pg_port=$3
  known_hosts_line "$ssh_port" > "$SSH_DIR/known_hosts"
  local env="$STATE/env"
  {
    echo "export PAYBATCH_TEST_SFTP_URL=sftp://root@127.0.0.1:$ssh_port$STATE/sftp"
    echo "export PAYBATCH_TEST_SFTP_KEY=$SSH_DIR/id_ed25519"
    echo "export PAYBATCH_TEST_SFTP_KNOWN_HOSTS=$SSH_DIR/known_hosts"
    if [ -f "$STATE/sftp-password" ]; then
      # A throwaway password of a no-shell user that only this 127.0.0.1 sshd lets in.
      echo "export PAYBATCH_TEST_SFTP_PASSWORD_URL=sftp://$PW_USER@127.0.0.1:$ssh_port$STATE/sftp-pw"
      echo "export PAYBATCH_TEST_SFTP_PASSWORD=$(cat "$STATE/sftp-password")"
    fi
    echo "export PAYBATCH_TEST_S3_URL=s3://$BUCKET"
    echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port"
    echo "export AWS_ALLOW_HTTP=true"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false"
    if [ -n "$pg_port" ]; then
      echo "export PAYBATCH_TEST_PG_URL=postgres://postgres@127.0.0.1:$pg_port/postgres"
      echo "export PAYBATCH_TEST_SERVERS_DIR=$STATE"
    fi
  } > "$env.tmp"
  mv "$env.tmp" "$env"
}

start() {
  command -v ssh-keygen >/dev/null && [ -x /usr/sbin/sshd ] || die "openssh-server missing: run tests/support/install.sh"
  mkdir -p "$STATE"
  keys
  local ssh_port s3_port
  if alive "$SSH_DIR/sshd.main.pid" && [ -f "$SSH_DIR/sshd.main.port" ]; then
    ssh_port=$(cat "$SSH_DIR/sshd.main.port")
    log "sshd already running on port $ssh_port"
  else
    # A fresh server starts with an empty base folder (tests leave their unique sub-folders).
    find "$STATE/sftp" -mindepth 1 -maxdepth 1 -name 't-*' -exec rm -rf {} +
    ssh_port=$(free_port)
    start_sshd main "$ssh_port"
    log "sshd on 127.0.0.1:$ssh_port"
  fi
  if alive "$STATE/moto.pid" && [ -f "$STATE/moto.port" ]; then
    s3_port=$(cat "$STATE/moto.port")
    log "moto already running on port $s3_port"
  else
    s3_port=$(free_port)
    local moto
    moto=$(moto_cmd)
    nohup "$moto" -H 127.0.0.1 -p "$s3_port" > "$STATE/moto.log" 2>&1 &
    echo $! > "$STATE/moto.pid"
    echo "$s3_port" > "$STATE/moto.port"
    wait_port "$s3_port" "" "moto"
    log "moto S3 on 127.0.0.1:$s3_port"
  fi
  # Create the bucket (moto does not check signatures; an unsigned PUT is enough). 200 or
  # 409 (already owned by you) are both fine.
  python3 - "$s3_port" "$BUCKET" <<'EOF'
import sys, time, urllib.request, urllib.error
port, bucket = sys.argv[1], sys.argv[2]
for attempt in range(50):
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT")
        urllib.request.urlopen(req, timeout=5).read()
        break
    except urllib.error.HTTPError as e:
        if e.code == 409:
            break
        raise
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"cannot create bucket {bucket} on port {port}")
EOF
  local pg_port=""
  if pg_alive && [ -f "$STATE/pg.port" ]; then
    pg_port=$(cat "$STATE/pg.port")
    log "postgres already running on port $pg_port"
  elif [ -n "$(pg_bin)" ]; then
    pg_port=$(free_port)
    pg_start "$pg_port"
    log "postgres on 127.0.0.1:$pg_port ($(cat "$STATE/pg.dir"))"
  else
    log "postgresql not installed: the shared-ledger tests will skip (run install.sh)"
  fi
  set_password
  write_env "$ssh_port" "$s3_port" "$pg_port"
  log "wrote $STATE/env (source it)"
}

stop() {
  stop_pidfile "$SSH_DIR/sshd.main.pid"
  stop_pidfile "$STATE/moto.pid"
  pg_stop fast
  if [ -f "$STATE/pg.dir" ]; then rm -rf "$(cat "$STATE/pg.dir")"; rm -f "$STATE/pg.dir" "$STATE/pg.port"; fi
  for pidfile in "$SSH_DIR"/sshd.*.pid; do
    [ -e "$pidfile" ] && stop_pidfile "$pidfile"
  done
  if [ "$PRIMARY" = yes ] && [ "$(id -u)" = 0 ] && id "$PW_USER" >/dev/null 2>&1; then
    usermod -p '*' "$PW_USER"
  fi
  rm -f "$STATE/sftp-password" "$STATE/env"
  log "stopped"
}

status() {
  if alive "$SSH_DIR/sshd.main.pid"; then echo "sshd: running on port $(cat "$SSH_DIR/sshd.main.port")"; else echo "sshd: stopped"; fi
  if alive "$STATE/moto.pid"; then echo "moto: running on port $(cat "$STATE/moto.port")"; else echo "moto: stopped"; fi
  if pg_alive; then echo "postgres: running on port $(cat "$STATE/pg.port")"; else echo "postgres: stopped"; fi
}

descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

extra_sshd() {
  local action=${1:-} name=${2:-}
  [ -n "$name" ] && [ "$name" != main ] || die "usage: $0 sshd start|stop NAME [PORT] (NAME not 'main')"
  case "$action" in
    start)
      keys
      local port=${3:-}
      stop_pidfile "$SSH_DIR/sshd.x-$name.pid"
      [ -n "$port" ] || port=$(free_port)
      start_sshd "x-$name" "$port"
      echo "$port"
      ;;
    stop) stop_pidfile "$SSH_DIR/sshd.x-$name.pid" ;;
    pause | resume)
      # Freeze (or thaw) the server and every connection: it accepts TCP but answers nothing,
      # like a hung host — for timeout tests.
      local signal=STOP pid
      [ "$action" = resume ] && signal=CONT
      alive "$SSH_DIR/sshd.x-$name.pid" || die "sshd $name is not running"
      pid=$(cat "$SSH_DIR/sshd.x-$name.pid")
      for p in $pid $(descendants "$pid"); do kill -"$signal" "$p" 2>/dev/null || true; done
      ;;
    *) die "usage: $0 sshd start|stop|pause|resume NAME [PORT]" ;;
  esac
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  sshd) shift; extra_sshd "$@" ;;
  pg) shift; pg_control "$@" ;;
  *) echo "usage: $0 start|stop|status|sshd start|stop|pause|resume NAME [PORT]|pg stop|start|crash" >&2; exit 2 ;;
esac
