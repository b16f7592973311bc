#!/usr/bin/env bash
# Forms the AppHost's Citus cluster (--Infra:Database=citus), then exits 0; `migrate` waits for it.
#
#   citus.sh <database> <coordinator host:port> <worker host:port>...
#
# Process mode runs it on the host with 127.0.0.1:<port> for every node; container mode in a container of the Citus
# image with the nodes' container names (postgres:5432, citus-worker-1:5432, ...), the names the nodes know each
# other by on the engine's network.
#
# On every node: the citus extension in <database> (Citus keeps its node list per database). On the coordinator: each
# worker added when it is not a member yet (process mode's workers keep their ports from run to run: the AppHost saves
# them in the data root, since Citus cannot move a node while another is unreachable at an old address), then itself
# registered as the coordinator at its current address. Idempotent. POSTGRES_PASSWORD: the superuser's, on every node.
#
# STAY_UP=1 (container mode): after forming the cluster the script stays up until it is stopped (SIGTERM ends it at
# once), and the AppHost's health check of this resource reads the formed cluster from the coordinator. A container
# that exits within a second of its start races the engine: Podman 4.3 can fail or hang the `network connect` that
# Aspire's orchestrator issues right after the start (seen as citus-cluster FailedToStart on a restart, when the
# cluster is already formed and the script has nothing to wait for).
set -euo pipefail

database=${1:?database}
coordinator=${2:?coordinator host:port}
shift 2
[ $# -ge 1 ] || { echo "citus.sh: at least one worker host:port" >&2; exit 2; }
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
export PGPASSWORD=$POSTGRES_PASSWORD
sql() { # host:port, statement: one value, tab-free
  "$bindir/psql" -Atqv ON_ERROR_STOP=1 "host=${1%:*} port=${1##*:} user=postgres dbname=$database connect_timeout=10" -c "$2"
}

for node in "$coordinator" "$@"; do
  sql "$node" "CREATE EXTENSION IF NOT EXISTS citus" >/dev/null
done
for worker in "$@"; do
  host=${worker%:*}
  port=${worker##*:}
  node=$(sql "$coordinator" "SELECT nodeid FROM pg_dist_node WHERE nodename = '$host' AND nodeport = $port")
  if [ -n "$node" ]; then
    echo "citus.sh: worker node $node at $worker"
    continue
  fi
  if [ "$(sql "$worker" "SELECT groupid FROM pg_dist_local_group")" != 0 ]; then
    echo "citus.sh: $worker is already a worker of another cluster or at another address (its data was kept, the" \
         "coordinator's list was not): remove its folder or volume, or all of them (--Infra:Reset=true)" >&2
    exit 1
  fi
  node=$(sql "$coordinator" "SELECT citus_add_node('$host', $port)")
  echo "citus.sh: worker $worker added (node $node)"
done

# Last: the coordinator at its address of this run (the metadata is synced to every worker, all reachable by now).
sql "$coordinator" "SELECT citus_set_coordinator_host('${coordinator%:*}', ${coordinator##*:})" >/dev/null
echo "citus.sh: cluster of $database: coordinator $coordinator, $# worker(s)"

if [ "${STAY_UP:-0}" = 1 ]; then
  trap 'exit 0' TERM INT
  sleep infinity &
  wait $!
fi
