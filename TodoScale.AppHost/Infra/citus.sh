#!/usr/bin/env bash
# Forms the Citus cluster of the AppHost's process mode (--Infra:Database=citus), then exits 0; `migrate` waits for it.
#
#   citus.sh <database> <coordinator-port> <worker-port>...
#
# On every node: the citus extension in <database> (Citus keeps its node list per database). On the coordinator:
# itself registered as the coordinator at its current port, and each worker added, or moved to its current port
# when it is already a member (process mode picks ports per run: a worker is recognised by the group id it keeps in
# its own database). Idempotent: a second run changes nothing. POSTGRES_PASSWORD: the superuser's, on every node.
set -euo pipefail

database=${1:?database}
coordinator=${2:?coordinator port}
shift 2
[ $# -ge 1 ] || { echo "citus.sh: at least one worker port" >&2; exit 2; }
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
export PGPASSWORD=$POSTGRES_PASSWORD
sql() { # port, statement: one value, tab-free
  "$bindir/psql" -Atqv ON_ERROR_STOP=1 "host=127.0.0.1 port=$1 user=postgres dbname=$database connect_timeout=10" -c "$2"
}

for port in "$coordinator" "$@"; do
  sql "$port" "CREATE EXTENSION IF NOT EXISTS citus" >/dev/null
done
sql "$coordinator" "SELECT citus_set_coordinator_host('127.0.0.1', $coordinator)" >/dev/null

for port in "$@"; do
  group=$(sql "$port" "SELECT groupid FROM pg_dist_local_group")
  node=""
  [ "$group" != 0 ] && node=$(sql "$coordinator" "SELECT nodeid FROM pg_dist_node WHERE groupid = $group AND noderole = 'primary'")
  if [ -z "$node" ]; then
    node=$(sql "$coordinator" "SELECT citus_add_node('127.0.0.1', $port)")
    echo "citus.sh: worker 127.0.0.1:$port added (node $node)"
  elif [ "$(sql "$coordinator" "SELECT nodeport FROM pg_dist_node WHERE nodeid = $node")" != "$port" ]; then
    sql "$coordinator" "SELECT citus_update_node($node, '127.0.0.1', $port)" >/dev/null
    sql "$coordinator" "SELECT citus_activate_node('127.0.0.1', $port)" >/dev/null
    echo "citus.sh: worker node $node moved to 127.0.0.1:$port"
  else
    echo "citus.sh: worker node $node at 127.0.0.1:$port"
  fi
done
echo "citus.sh: cluster of $database: coordinator 127.0.0.1:$coordinator, $# worker(s)"
