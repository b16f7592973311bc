#!/usr/bin/env bash
# The streaming replica in container mode: the entrypoint of the `todos-replica` container (the postgres image,
# run as root), handed to it as `bash -c <this file's text>`. The same rules as postgres.sh's replica in process
# mode:
#   - it waits for the primary at most REPLICA_WAIT_SECONDS (default 120), then exits with the reason, so a broken
#     primary is a failed resource in the dashboard and not a replica "starting" forever;
#   - a kept data folder cloned from another cluster (the primary's volume was wiped) is cloned again instead of
#     serving stale data, as is one whose slot lost WAL it needs (max_slot_wal_keep_size);
#   - it streams through the physical slot todos_replica, so the primary keeps the WAL it has not received;
#   - it runs with the same server settings as the primary (POSTGRES_SETTINGS: name=value words).
set -euo pipefail
export PGDATA=/var/lib/postgresql/data
: "${PRIMARY_HOST:?PRIMARY_HOST must be set}" "${PRIMARY_PORT:?PRIMARY_PORT must be set}" "${PGPASSWORD:?PGPASSWORD must be set}"
slot=todos_replica
wait_seconds=${REPLICA_WAIT_SECONDS:-120}
on_primary() { psql -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -Atq -c "$1"; }

waited=0
until error=$(on_primary "SELECT 1" 2>&1); do
  if [ "$waited" -ge "$wait_seconds" ]; then
    echo "replica: the primary $PRIMARY_HOST:$PRIMARY_PORT did not answer within ${wait_seconds} s: $error" >&2
    exit 1
  fi
  [ "$waited" -eq 0 ] && echo "replica: waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
  sleep 1
  waited=$((waited + 1))
done

if [ -s "$PGDATA/PG_VERSION" ]; then
  mine=$(gosu postgres pg_controldata -D "$PGDATA" | awk -F': *' '/Database system identifier/ {print $2}')
  theirs=$(on_primary "SELECT system_identifier FROM pg_control_system()")
  if [ "$mine" != "$theirs" ]; then
    echo "replica: the kept folder was cloned from another cluster ($mine, the primary is $theirs): cloning again"
    find "$PGDATA" -mindepth 1 -delete
  fi
fi
if [ "$(on_primary "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '$slot'")" = lost ]; then
  echo "replica: slot $slot lost the WAL this replica needs (max_slot_wal_keep_size): cloning again"
  on_primary "SELECT pg_drop_replication_slot('$slot')" >/dev/null
  find "$PGDATA" -mindepth 1 -delete
fi
on_primary "SELECT pg_create_physical_replication_slot('$slot', true)
             WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$slot')" >/dev/null

mkdir -p "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  find "$PGDATA" -mindepth 1 -delete
  echo "replica: pg_basebackup from $PRIMARY_HOST:$PRIMARY_PORT"
  pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -D "$PGDATA" -X stream -S "$slot" -R --checkpoint=fast
fi
chown -R postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"

settings=()
for setting in ${POSTGRES_SETTINGS:-}; do
  settings+=(-c "$setting")
done
exec gosu postgres postgres -D "$PGDATA" -c hot_standby=on -c hot_standby_feedback=on -c "primary_slot_name=$slot" \
  -c "primary_conninfo=host=$PRIMARY_HOST port=$PRIMARY_PORT user=postgres password=$PGPASSWORD application_name=todos_replica" \
  ${settings[@]+"${settings[@]}"}
