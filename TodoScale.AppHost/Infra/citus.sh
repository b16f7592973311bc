#!/usr/bin/env bash
# Forms the Citus cluster of the AppHost's process mode (--Infra:Database=citus), then exits 0; `migrate` waits for it.
#
#   citus.sh <database> <coordinator-port> <worker-port>...
#
# On every node: the citus extension in <database> (Citus keeps its node list per database). On the coordinator: each
# worker added when it is not a member yet (the workers keep their ports from run to run: the AppHost saves them in
# the data root, since Citus cannot move a node while another is unreachable at an old port), then itself registered
# as the coordinator at its current port. Idempotent. POSTGRES_PASSWORD: the superuser's, on every node.
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
for port in "$@"; do
  node=$(sql "$coordinator" "SELECT nodeid FROM pg_dist_node WHERE nodename = '127.0.0.1' AND nodeport = $port")
  if [ -n "$node" ]; then
    echo "citus.sh: worker node $node at 127.0.0.1:$port"
    continue
  fi
  if [ "$(sql "$port" "SELECT groupid FROM pg_dist_local_group")" != 0 ]; then
    echo "citus.sh: 127.0.0.1:$port is already a worker of another cluster or at another port (its folder was kept, the" \
         "coordinator's list was not): remove its folder, or all folders (--Infra:Reset=true)" >&2
    exit 1
  fi
  node=$(sql "$coordinator" "SELECT citus_add_node('127.0.0.1', $port)")
  echo "citus.sh: worker 127.0.0.1:$port added (node $node)"
done

# Last: the coordinator at its port of this run (the metadata is synced to every worker, all reachable by now).
sql "$coordinator" "SELECT citus_set_coordinator_host('127.0.0.1', $coordinator)" >/dev/null
echo "citus.sh: cluster of $database: coordinator 127.0.0.1:$coordinator, $# worker(s)"
