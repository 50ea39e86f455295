#!/usr/bin/env bash
# FerretDB (MongoDB wire-compatible, SQLite backend) as the local test server
# for the MongoDB engine.
#
#   scripts/ferretdb.sh build    build the binary into the cache (if missing)
#   scripts/ferretdb.sh start    (re)start a fresh server, wait until it is up
#   scripts/ferretdb.sh ensure   start only if no healthy server is running
#   scripts/ferretdb.sh stop     stop it
#   scripts/ferretdb.sh url      print the admin mongodb:// URL
#
# Env: DBROKER_CACHE_DIR (binary cache, default ~/.cache/dbroker),
# DBROKER_STATE_DIR (data, log, pid; default /tmp/dbroker-ferretdb),
# FERRETDB_PORT (default 27017), FERRETDB_ADMIN_USER, FERRETDB_ADMIN_PASSWORD.
#
# `go install` of FerretDB builds a binary that panics at start because the
# module lacks the generated build/version/version.txt; so we copy the module
# source out of the Go module cache, write that file and build from the copy.
set -euo pipefail

FERRETDB_VERSION=v1.24.2
CACHE_DIR=${DBROKER_CACHE_DIR:-$HOME/.cache/dbroker}
STATE_DIR=${DBROKER_STATE_DIR:-/tmp/dbroker-ferretdb}
PORT=${FERRETDB_PORT:-27017}
ADMIN_USER=${FERRETDB_ADMIN_USER:-dbroker_admin}
# TEST-ONLY credential for a throwaway local server. Never use it anywhere else.
ADMIN_PASSWORD=${FERRETDB_ADMIN_PASSWORD:-dbroker-test-only-admin-pw}
BIN="$CACHE_DIR/ferretdb-$FERRETDB_VERSION"
PID_FILE="$STATE_DIR/ferretdb.pid"
LOG_FILE="$STATE_DIR/ferretdb.log"
# (Not "<state>.lock": an earlier version of this script leaked that lock's fd
# into the server process, which then held it for its whole life.)
LOCK_FILE="${STATE_DIR%/}.start.lock"

die() { echo "ferretdb.sh: $*" >&2; exit 1; }

build() {
  [[ -x "$BIN" ]] && return 0
  command -v go >/dev/null 2>&1 || die "go is not installed (needed to build FerretDB $FERRETDB_VERSION)"
  mkdir -p "$CACHE_DIR"
  echo "ferretdb.sh: building FerretDB $FERRETDB_VERSION into $BIN (minutes on a cold Go module cache)" >&2
  go mod download "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" || die "go mod download of FerretDB $FERRETDB_VERSION failed"
  local modcache src work
  modcache=$(go env GOMODCACHE)
  src="$modcache/github.com/!ferret!d!b/!ferret!d!b@$FERRETDB_VERSION"
  [[ -d "$src" ]] || die "FerretDB module source not found at $src"
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  cp -R "$src/." "$work/"
  chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
  (cd "$work" && GOFLAGS=-buildvcs=false go build -o "$BIN.tmp" ./cmd/ferretdb) || die "go build of FerretDB $FERRETDB_VERSION failed"
  mv "$BIN.tmp" "$BIN"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Authenticated ping with the setup user (FerretDB's own `ping` command).
auth_ping() {
  FERRETDB_SETUP_PASSWORD="$ADMIN_PASSWORD" timeout 10 "$BIN" ping \
    --listen-addr="127.0.0.1:$PORT" --setup-database=admin --setup-username="$ADMIN_USER" \
    --test-enable-new-auth --debug-addr=- --telemetry=disable --log-level=ERROR >/dev/null 2>&1 9>&-
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

start() {
  build
  stop
  port_open && die "port $PORT is already in use by another process (set FERRETDB_PORT)"
  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR/data"
  # The password goes through the environment, not argv (kept out of `ps`).
  FERRETDB_SETUP_PASSWORD="$ADMIN_PASSWORD" setsid "$BIN" \
    --handler=sqlite --sqlite-url="file:$STATE_DIR/data/" --state-dir="$STATE_DIR" \
    --listen-addr="127.0.0.1:$PORT" --debug-addr=- \
    --test-enable-new-auth --setup-database=admin --setup-username="$ADMIN_USER" \
    --telemetry=disable </dev/null >"$LOG_FILE" 2>&1 9>&- &
  echo $! > "$PID_FILE"
  for _ in $(seq 1 300); do
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then break; fi
    if port_open && auth_ping; then return 0; fi
    sleep 0.1
  done
  echo "ferretdb.sh: FerretDB did not come up on 127.0.0.1:$PORT; log tail:" >&2
  tail -n 30 "$LOG_FILE" >&2 || true
  stop
  exit 1
}

ensure() {
  build
  if running_pid >/dev/null && port_open && auth_ping; then return 0; fi
  start
}

url() {
  local enc
  enc=$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]) + ":" + encodeURIComponent(process.argv[2]))' "$ADMIN_USER" "$ADMIN_PASSWORD")
  echo "mongodb://$enc@127.0.0.1:$PORT/admin?authMechanism=SCRAM-SHA-256"
}

# Serialise start/stop so parallel test files do not restart each other's server.
locked() {
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>"$LOCK_FILE"
  flock -w 300 9 || die "timed out waiting for $LOCK_FILE"
  "$@"
}

case "${1:-}" in
  build) build ;;
  start) locked start ;;
  ensure) locked ensure ;;
  stop) locked stop ;;
  url) url ;;
  *) echo "usage: $0 build|start|ensure|stop|url" >&2; exit 2 ;;
esac
