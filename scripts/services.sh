#!/usr/bin/env bash
# Make sure every database server the tests talk to is up, starting the ones
# this machine has installed when they are down. Fails loudly (non-zero) when
# one cannot be reached: the suite never silently skips an engine.
#
#   PostgreSQL  127.0.0.1:5432  (DBROKER_TEST_PG_URL overrides)
#   MariaDB     127.0.0.1:3306  (DBROKER_TEST_MYSQL_URL overrides)
#   FerretDB    127.0.0.1:27017 (built and started by scripts/ferretdb.sh; MONGODB_URL overrides)
#   Chromium    /usr/bin/chromium (apt-get install when missing; DBROKER_CHROMIUM overrides)
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() {
  local host=$1 port=$2 name=$3
  for _ in $(seq 1 60); do port_open "$host" "$port" && return 0; sleep 0.5; done
  echo "services.sh: $name is not reachable at $host:$port" >&2
  return 1
}

if [[ -z "${DBROKER_TEST_PG_URL:-}" ]] && ! port_open 127.0.0.1 5432; then
  echo "services.sh: starting PostgreSQL" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort | tail -n 1)" main start || true
  fi
  wait_port 127.0.0.1 5432 PostgreSQL
fi

if [[ -z "${DBROKER_TEST_MYSQL_URL:-}" ]] && ! port_open 127.0.0.1 3306; then
  echo "services.sh: starting MariaDB" >&2
  if [[ -x /usr/sbin/mariadbd ]]; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  fi
  wait_port 127.0.0.1 3306 MariaDB
fi

if [[ -z "${MONGODB_URL:-}" ]]; then
  bash scripts/ferretdb.sh ensure
fi

# The web UI tests (test/ui/) drive Debian's Chromium through playwright-core;
# they never skip the browser, so install it here when it is missing.
CHROMIUM="${DBROKER_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  echo "services.sh: installing chromium (apt-get) for the web UI tests" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2; then
    echo "services.sh: could not install chromium; the web UI tests need $CHROMIUM" >&2
    exit 1
  fi
  [[ -x "$CHROMIUM" ]] || { echo "services.sh: chromium installed but $CHROMIUM is missing" >&2; exit 1; }
fi
echo "services.sh: PostgreSQL, MariaDB, MongoDB (FerretDB or MONGODB_URL) and $("$CHROMIUM" --version 2>/dev/null | head -n 1) are up" >&2
