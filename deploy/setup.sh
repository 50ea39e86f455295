#!/usr/bin/env bash
# Initialise, unseal and configure the dbroker of docker-compose.yml.
#
#   docker compose up -d --build
#   bash deploy/setup.sh
#
# What it does, step by step:
#   1. waits until the broker answers on $DBROKER_ADDR;
#   2. first run only: PUT sys/init with $KEY_SHARES shares / $KEY_THRESHOLD
#      threshold, and writes the answer (unseal keys + root token, shown only
#      once) to $INIT_FILE with mode 0600. That file is for this demo: in real
#      use hand each key share to a different person and delete the file;
#   3. if the broker is sealed (first run, or after any restart of its
#      container): PUT sys/unseal with the first $KEY_THRESHOLD keys (from
#      $UNSEAL_KEYS, space-separated, or else from $INIT_FILE);
#   4. configures the connections `postgres`, `mysql` and `mongodb` (the
#      compose services, as their admin users) and the roles
#      `postgres-readonly`, `postgres-readwrite`, `mysql-readonly` and
#      `mongodb-readonly` (grants on the `app` database), TTL 1h, max 24h;
#      running it again re-applies the same settings. On PostgreSQL the
#      privileges go to two group roles, app_read and app_readwrite
#      ($PG_READ_GROUP, $PG_READWRITE_GROUP), and each dynamic user only becomes a member
#      (`GRANT app_read TO "{{name}}"`): a table's ACL takes only about 2,400
#      direct grantees (SQLSTATE 54000), see README "PostgreSQL: grant a group
#      role, not each user". The groups are created if missing and granted
#      the `public` schema's tables and sequences (now and, by default
#      privileges, later ones), by the broker's own admin login: through a
#      one-off role `postgres-setup` whose single credential is revoked, and
#      the role deleted, at once. So it works after ROTATE_ROOT=1 too (only
#      the broker knows the admin password then), and the admin that grants
#      the memberships is the one that created the groups (PostgreSQL 16 wants
#      ADMIN OPTION on a group from a non-superuser admin). Tables that
#      another owner than $POSTGRES_USER creates later are not covered by the
#      default privileges: run the script again to grant them too.
#      A connection that exists already keeps the admin password the broker
#      has (the update does not send one): after ROTATE_ROOT=1 the password
#      from the environment no longer works. To hand the broker a new one:
#      PUT database/config/<name> with {"password": "..."} alone;
#   5. with ROTATE_ROOT=1: rotates each connection's admin password, so only
#      the broker knows it afterwards (the compose passwords then stop working
#      for those admin accounts; MySQL's root@localhost keeps its password).
#
# Env: DBROKER_ADDR (http://127.0.0.1:8200), DBROKER_TOKEN (default: the root
# token from $INIT_FILE), INIT_FILE (deploy/.init.json), KEY_SHARES (1),
# KEY_THRESHOLD (1), UNSEAL_KEYS, ROTATE_ROOT (0), and the database admin
# passwords POSTGRES_PASSWORD, MYSQL_ROOT_PASSWORD, MONGO_ROOT_PASSWORD with
# the same defaults as docker-compose.yml (a `.env` next to it is read too).
# To point the example at other servers (as seen from the broker): POSTGRES_ADDR
# (postgres:5432), POSTGRES_USER (postgres), POSTGRES_DB (app), MYSQL_ADDR
# (mysql:3306), MYSQL_ADMIN_USER (root), MONGO_ADDR (mongo:27017),
# MONGO_ROOT_USER (root). PG_READ_GROUP (app_read) and PG_READWRITE_GROUP
# (app_readwrite) name the PostgreSQL group roles (lower-case letters, digits, _).
# Needs curl, and jq or python3.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
if [[ -f "$HERE/../.env" ]]; then
  set -a
  # shellcheck disable=SC1091
  . "$HERE/../.env"
  set +a
fi

ADDR=${DBROKER_ADDR:-http://127.0.0.1:8200}
INIT_FILE=${INIT_FILE:-$HERE/.init.json}
KEY_SHARES=${KEY_SHARES:-1}
KEY_THRESHOLD=${KEY_THRESHOLD:-1}
POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-example-postgres-admin-pw}
MYSQL_ROOT_PASSWORD=${MYSQL_ROOT_PASSWORD:-example-mysql-root-pw}
MONGO_ROOT_PASSWORD=${MONGO_ROOT_PASSWORD:-example-mongo-root-pw}
POSTGRES_ADDR=${POSTGRES_ADDR:-postgres:5432}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-app}
MYSQL_ADDR=${MYSQL_ADDR:-mysql:3306}
MYSQL_ADMIN_USER=${MYSQL_ADMIN_USER:-root}
MONGO_ADDR=${MONGO_ADDR:-mongo:27017}
MONGO_ROOT_USER=${MONGO_ROOT_USER:-root}
PG_READ_GROUP=${PG_READ_GROUP:-app_read}
PG_READWRITE_GROUP=${PG_READWRITE_GROUP:-app_readwrite}

die() { echo "setup.sh: $*" >&2; exit 1; }
command -v curl >/dev/null || die "curl is required"
# The group names go into SQL and JSON as they are: plain identifiers only.
for group in "$PG_READ_GROUP" "$PG_READWRITE_GROUP"; do
  [[ "$group" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "PG_READ_GROUP / PG_READWRITE_GROUP: \"$group\" is not a plain lower-case identifier"
done

# json_get EXPR: read JSON on stdin, print the field (EXPR in jq syntax: .a, .a[0], .a|length).
if command -v jq >/dev/null; then
  json_get() { jq -r "$1"; }
  json_string() { jq -Rn --arg v "$1" '$v'; }
elif command -v python3 >/dev/null; then
  json_get() {
    python3 -c '
import json, re, sys
v = json.load(sys.stdin)
expr = sys.argv[1]
length = expr.endswith("|length")
for part in re.findall(r"\.(\w+)|\[(\d+)\]", expr.removesuffix("|length")):
    v = v[part[0]] if part[0] else v[int(part[1])]
v = len(v) if length else v
print(json.dumps(v) if isinstance(v, bool) else v)' "$1"
  }
  json_string() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
else
  die "jq or python3 is required"
fi

# api METHOD PATH [BODY]: prints the response body; fails on a 4xx/5xx with the broker's message.
# The token and the body go through files/stdin, not argv, so they stay out of `ps`.
api() {
  local method=$1 path=$2 body=${3:-} out code
  local args=(-sS -X "$method" -w '\n%{http_code}')
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data-binary @-)
  # (The <(...) must sit on curl's own command line: its fd lives only for that command.)
  out=$(printf '%s' "$body" | curl "${args[@]}" -H @<(printf 'X-Vault-Token: %s\n' "${TOKEN:-}") "$ADDR/v1/$path") || die "$method $path: cannot reach $ADDR"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  [[ "$code" =~ ^[0-9]+$ && "$code" -lt 400 ]] || die "$method $path answered $code: $out"
  printf '%s' "$out"
}

# 1. Wait for the broker (any sys/health answer: 200, 429, 501 uninitialised, 503 sealed).
for i in $(seq 1 60); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$ADDR/v1/sys/health" || true)
  [[ "$code" =~ ^(200|429|501|503)$ ]] && break
  [[ $i -eq 60 ]] && die "no broker at $ADDR after 60 s (docker compose ps; docker compose logs dbroker)"
  sleep 1
done

# 2. Initialise once.
# (Each answer goes through a variable first, so set -e stops on a failed call.)
initialized=$(api GET sys/init | json_get .initialized)
if [[ "$initialized" != true ]]; then
  echo "setup.sh: initialising ($KEY_SHARES key shares, threshold $KEY_THRESHOLD)"
  (
    umask 077
    api PUT sys/init "{\"secret_shares\":$KEY_SHARES,\"secret_threshold\":$KEY_THRESHOLD}" >"$INIT_FILE.tmp"
  ) || { rm -f "$INIT_FILE.tmp"; exit 1; }
  # A file from an earlier broker store is kept aside, never overwritten.
  [[ -e "$INIT_FILE" ]] && mv "$INIT_FILE" "$INIT_FILE.old-$(date +%s)"
  mv "$INIT_FILE.tmp" "$INIT_FILE"
  echo "setup.sh: unseal keys and root token written to $INIT_FILE (mode 0600): keep them safe, they are shown only once"
fi

# 3. Unseal if sealed.
sealed=$(api GET sys/seal-status | json_get .sealed)
if [[ "$sealed" == true ]]; then
  if [[ -n "${UNSEAL_KEYS:-}" ]]; then
    read -r -a keys <<<"$UNSEAL_KEYS"
  else
    [[ -r "$INIT_FILE" ]] || die "the broker is sealed: set UNSEAL_KEYS or provide $INIT_FILE"
    keys=()
    for ((i = 0; i < KEY_THRESHOLD; i++)); do keys+=("$(json_get ".keys[$i]" <"$INIT_FILE")"); done
  fi
  for key in "${keys[@]}"; do
    sealed=$(api PUT sys/unseal "{\"key\":$(json_string "$key")}" | json_get .sealed)
  done
  [[ "$sealed" == false ]] || die "still sealed after ${#keys[@]} key(s)"
  echo "setup.sh: unsealed"
fi

TOKEN=${DBROKER_TOKEN:-}
if [[ -z "$TOKEN" ]]; then
  [[ -r "$INIT_FILE" ]] || die "set DBROKER_TOKEN or provide $INIT_FILE"
  TOKEN=$(json_get .root_token <"$INIT_FILE")
fi

# 4. Connections (compose service names; the broker logs in to check each one).
# exists PATH: whether GET PATH answers 200 (404: it does not; anything else stops the script).
exists() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H @<(printf 'X-Vault-Token: %s\n' "$TOKEN") "$ADDR/v1/$1") || die "GET $1: cannot reach $ADDR"
  case $code in
    200) return 0 ;;
    404) return 1 ;;
    *) die "GET $1 answered $code" ;;
  esac
}
# admin_password CONNECTION PASSWORD: the JSON member `"password": "…",` when
# CONNECTION is new. An existing one is updated without it and keeps the
# password the broker has: after ROTATE_ROOT=1 only the broker knows it, and
# the one from the environment no longer logs in.
admin_password() {
  exists "database/config/$1" || printf '"password": %s,' "$(json_string "$2")"
}
# (Through variables, so set -e stops on a failed look-up.)
pg_password=$(admin_password postgres "$POSTGRES_PASSWORD")
mysql_password=$(admin_password mysql "$MYSQL_ROOT_PASSWORD")
mongo_password=$(admin_password mongodb "$MONGO_ROOT_PASSWORD")
api PUT database/config/postgres "{
  \"plugin_name\": \"postgresql-database-plugin\",
  \"connection_url\": \"postgresql://{{username}}:{{password}}@$POSTGRES_ADDR/$POSTGRES_DB?sslmode=disable\",
  \"username\": $(json_string "$POSTGRES_USER"),
  $pg_password
  \"password_authentication\": \"scram-sha-256\",
  \"allowed_roles\": [\"postgres-readonly\", \"postgres-readwrite\", \"postgres-setup\"]
}" >/dev/null
api PUT database/config/mysql "{
  \"plugin_name\": \"mysql-database-plugin\",
  \"connection_url\": \"{{username}}:{{password}}@tcp($MYSQL_ADDR)/\",
  \"username\": $(json_string "$MYSQL_ADMIN_USER"),
  $mysql_password
  \"allowed_roles\": [\"mysql-readonly\"]
}" >/dev/null
api PUT database/config/mongodb "{
  \"plugin_name\": \"mongodb-database-plugin\",
  \"connection_url\": \"mongodb://{{username}}:{{password}}@$MONGO_ADDR/admin\",
  \"username\": $(json_string "$MONGO_ROOT_USER"),
  $mongo_password
  \"allowed_roles\": [\"mongodb-readonly\"]
}" >/dev/null
echo "setup.sh: connections postgres, mysql, mongodb configured"

# PostgreSQL group roles, made (if missing) and granted by the broker's admin
# login: the creation statements of a one-off role run as that login, in one
# transaction; its single credential is revoked and the role deleted at once.
api PUT database/roles/postgres-setup "{
  \"db_name\": \"postgres\",
  \"creation_statements\": [
    \"CREATE ROLE \\\"{{name}}\\\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';\",
    \"DO \$\$ BEGIN CREATE ROLE $PG_READ_GROUP NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$;\",
    \"DO \$\$ BEGIN CREATE ROLE $PG_READWRITE_GROUP NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$;\",
    \"GRANT USAGE ON SCHEMA public TO $PG_READ_GROUP, $PG_READWRITE_GROUP;\",
    \"GRANT SELECT ON ALL TABLES IN SCHEMA public TO $PG_READ_GROUP;\",
    \"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $PG_READWRITE_GROUP;\",
    \"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO $PG_READWRITE_GROUP;\",
    \"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO $PG_READ_GROUP;\",
    \"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO $PG_READWRITE_GROUP;\",
    \"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO $PG_READWRITE_GROUP;\"
  ],
  \"default_ttl\": \"1m\",
  \"max_ttl\": \"1m\"
}" >/dev/null
setup_lease=$(api GET database/creds/postgres-setup | json_get .lease_id)
api PUT sys/leases/revoke "{\"lease_id\": $(json_string "$setup_lease"), \"sync\": true}" >/dev/null
api DELETE database/roles/postgres-setup >/dev/null
# An update sends only what changes (the rest, plugin_name included, is kept).
api PUT database/config/postgres '{"allowed_roles": ["postgres-readonly", "postgres-readwrite"]}' >/dev/null
echo "setup.sh: PostgreSQL group roles $PG_READ_GROUP and $PG_READWRITE_GROUP ready"

# Roles. Statements are templates: {{name}}, {{password}}, {{expiration}}.
# On PostgreSQL each user only joins a group role (no per-user grant on any table).
api PUT database/roles/postgres-readonly "{
  \"db_name\": \"postgres\",
  \"creation_statements\": [
    \"CREATE ROLE \\\"{{name}}\\\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';\",
    \"GRANT $PG_READ_GROUP TO \\\"{{name}}\\\";\"
  ],
  \"default_ttl\": \"1h\",
  \"max_ttl\": \"24h\"
}" >/dev/null
api PUT database/roles/postgres-readwrite "{
  \"db_name\": \"postgres\",
  \"creation_statements\": [
    \"CREATE ROLE \\\"{{name}}\\\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';\",
    \"GRANT $PG_READWRITE_GROUP TO \\\"{{name}}\\\";\"
  ],
  \"default_ttl\": \"1h\",
  \"max_ttl\": \"24h\"
}" >/dev/null
api PUT database/roles/mysql-readonly "$(cat <<'JSON'
{
  "db_name": "mysql",
  "creation_statements": [
    "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';",
    "GRANT SELECT ON app.* TO '{{name}}'@'%';"
  ],
  "default_ttl": "1h",
  "max_ttl": "24h"
}
JSON
)" >/dev/null
api PUT database/roles/mongodb-readonly "$(cat <<'JSON'
{
  "db_name": "mongodb",
  "creation_statements": ["{\"db\": \"admin\", \"roles\": [{\"role\": \"read\", \"db\": \"app\"}]}"],
  "default_ttl": "1h",
  "max_ttl": "24h"
}
JSON
)" >/dev/null
echo "setup.sh: roles postgres-readonly, postgres-readwrite, mysql-readonly, mongodb-readonly configured"

# 5. Optional: only the broker knows the admin passwords from now on.
if [[ "${ROTATE_ROOT:-0}" == 1 ]]; then
  for conn in postgres mysql mongodb; do api PUT "database/rotate-root/$conn" >/dev/null; done
  echo "setup.sh: admin passwords rotated"
fi

cat <<EOF

Try it:
  export VAULT_ADDR=$ADDR VAULT_TOKEN=\$(jq -r .root_token $INIT_FILE)
  curl -s -H "X-Vault-Token: \$VAULT_TOKEN" \$VAULT_ADDR/v1/database/creds/postgres-readonly
  curl -s -H "X-Vault-Token: \$VAULT_TOKEN" \$VAULT_ADDR/v1/database/creds/mysql-readonly
  curl -s -H "X-Vault-Token: \$VAULT_TOKEN" \$VAULT_ADDR/v1/database/creds/mongodb-readonly
  # the databases from the host: psql -h 127.0.0.1 -p 15432 -U <username> app
  #                              mysql -h 127.0.0.1 -P 13306 -u <username> -p app
  #                              mongosh "mongodb://<username>:<password>@127.0.0.1:27018/admin"
EOF
