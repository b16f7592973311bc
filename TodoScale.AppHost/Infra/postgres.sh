#!/usr/bin/env bash
# One PostgreSQL server for the AppHost's process mode, from the local PostgreSQL install.
#
#   postgres.sh primary <data-dir> <port> <database>
#   postgres.sh replica <data-dir> <port> <primary-port>
#
# PGBACKREST_CONFIG, SOCKET_DIR (a primary): WAL archived to pgBackRest's repository (below).
# CITUS=on (--Infra:Database=citus): the server is a Citus node (citus preloaded, logical WAL for the online
# rebalancer, no SSL between nodes), and it authenticates to the other nodes as postgres with the password file.
# A primary is then the coordinator or a worker (both made the same way), a replica the coordinator's hot standby.
#
# primary: initdb when the folder is empty (superuser `postgres` with POSTGRES_PASSWORD, scram on TCP) and
#          create <database>; then serve on 127.0.0.1:<port>.
# replica: pg_basebackup from the primary when the folder is empty, was cloned from another cluster, or its slot
#          lost WAL it needs; then serve as a hot standby streaming from the primary's CURRENT port (primary_conninfo
#          on the command line overrides the one pg_basebackup wrote, so a kept folder follows the primary to its new
#          port) through the physical replication slot `todos_replica`, so the primary keeps the WAL the standby has
#          not received yet (up to max_slot_wal_keep_size, MAX_SLOT_WAL_KEEP_SIZE: Infra:MaxSlotWalKeepSize).
#
# Runs the server as the `postgres` user when started as root (postgres refuses root). DCP stops a resource with
# SIGTERM, which postgres reads as a "smart" shutdown that waits for clients; it is translated to SIGINT (fast
# shutdown: clients are disconnected, the cluster is left clean) so a stop takes about a second.
set -euo pipefail

role=${1:?role (primary|replica)}
data=${2:?data directory}
port=${3:?port}
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
  echo "postgres.sh: no PostgreSQL server found under /usr/lib/postgresql (install postgresql-15, or set PG_BINDIR)" >&2
  exit 1
fi

# setpriv execs into the program (no fork), so a backgrounded server's $! is the server itself.
if [ "$(id -u)" = 0 ]; then
  run_as=(setpriv --reuid=postgres --regid=postgres --init-groups)
else
  run_as=()
fi
as_postgres() { "${run_as[@]}" "$@"; }

prepare_dir() {
  mkdir -p "$1"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$1"
  chmod 700 "$1"
}

# A password file (libpq's passfile) owned by the server's user, so no password appears on a command line.
passfile="$(dirname "$data")/.$(basename "$data").pgpass"
printf '127.0.0.1:*:*:postgres:%s\n' "$POSTGRES_PASSWORD" > "$passfile"
chmod 600 "$passfile"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$passfile"

extra=()
case "$role" in
  primary)
    database=${4:?database}
    if [ ! -s "$data/PG_VERSION" ]; then
      prepare_dir "$data"
      pwfile="$data.pwfile"
      printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$pwfile"
      echo "postgres.sh: initdb $data"
      as_postgres "$bindir/initdb" -D "$data" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
      rm -f "$pwfile"
      echo "CREATE DATABASE \"$database\"" | as_postgres "$bindir/postgres" --single -D "$data" postgres >/dev/null
      echo "postgres.sh: created database $database"
    fi
    ;;
  replica)
    primary_port=${4:?primary port}
    conninfo="host=127.0.0.1 port=$primary_port user=postgres passfile=$passfile application_name=todos_replica"
    slot=todos_replica
    on_primary() { PGPASSFILE=$passfile as_postgres "$bindir/psql" -Atq "$conninfo dbname=postgres" -c "$1"; }
    if [ -s "$data/PG_VERSION" ]; then
      # A kept replica must come from the same cluster as the primary (the primary may have been wiped).
      mine=$(as_postgres "$bindir/pg_controldata" -D "$data" | awk -F': *' '/Database system identifier/ {print $2}')
      theirs=$(PGPASSFILE=$passfile as_postgres "$bindir/psql" -Atq "$conninfo dbname=postgres" \
        -c 'SELECT system_identifier FROM pg_control_system()')
      if [ "$mine" != "$theirs" ]; then
        echo "postgres.sh: replica was cloned from another cluster ($mine, primary is $theirs): cloning again"
        rm -rf "$data"
      fi
    fi
    # A slot past max_slot_wal_keep_size has lost WAL this standby needs: it can never catch up from it.
    if [ "$(on_primary "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '$slot'")" = lost ]; then
      echo "postgres.sh: slot $slot lost the WAL this replica needs (max_slot_wal_keep_size): cloning again"
      on_primary "SELECT pg_drop_replication_slot('$slot')" >/dev/null
      rm -rf "$data"
    fi
    on_primary "SELECT pg_create_physical_replication_slot('$slot', true)
                 WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$slot')" >/dev/null
    if [ ! -s "$data/PG_VERSION" ]; then
      rm -rf "$data"
      prepare_dir "$data"
      echo "postgres.sh: pg_basebackup from 127.0.0.1:$primary_port into $data"
      as_postgres "$bindir/pg_basebackup" -d "$conninfo" -D "$data" -X stream -S "$slot" -R --checkpoint=fast
    fi
    extra=(-c "primary_conninfo=$conninfo" -c "primary_slot_name=$slot" -c hot_standby=on -c hot_standby_feedback=on)
    ;;
  *)
    echo "postgres.sh: unknown role '$role' (primary|replica)" >&2
    exit 2
    ;;
esac

wal_level=replica
if [ "${CITUS:-off}" = on ]; then
  wal_level=logical
  extra+=(-c shared_preload_libraries=citus -c citus.node_conninfo=sslmode=disable -c max_worker_processes=32)
  export PGPASSFILE=$passfile # libpq inside the server (Citus' connections to the other nodes)
fi

# PGBACKREST_CONFIG (a primary of process mode on PostgreSQL): every finished WAL segment is pushed to pgBackRest's
# repository (stanza todos), at the latest archive_timeout after a write, and the server listens on a socket in
# SOCKET_DIR too (pgBackRest reaches a local server only through its socket). The folders pgBackRest writes are made
# here, the server's user owning them.
if [ -n "${PGBACKREST_CONFIG:-}" ] && [ "$role" = primary ]; then
  : "${SOCKET_DIR:?SOCKET_DIR must be set with PGBACKREST_CONFIG}"
  for dir in "$SOCKET_DIR" $(awk -F= '/^(repo1-path|log-path|lock-path|spool-path)=/ {print $2}' "$PGBACKREST_CONFIG"); do
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  done
  chmod 700 "$SOCKET_DIR"
  extra+=(-c archive_mode=on -c archive_timeout=60 -c "unix_socket_directories=$SOCKET_DIR"
          -c "archive_command=pgbackrest --config=$PGBACKREST_CONFIG --stanza=todos archive-push %p")
fi

# Infra:PostgresSettings, as name=value words (checked by the AppHost), for both servers.
for setting in ${POSTGRES_SETTINGS:-}; do
  extra+=(-c "$setting")
done

# A server killed hard (SIGKILL) leaves its children for a moment, still attached to its shared memory, and a new
# postmaster refuses to start beside them ("pre-existing shared memory block ... is still in use"). Wait until the
# old segment (its id on line 7 of postmaster.pid) has no process attached, as the kernel counts them
# (/proc/sysvipc/shm, Linux; elsewhere postgres' own check decides).
wait_for_old_children() {
  local pidfile=$data/postmaster.pid shmid attached tries=0
  [ -r "$pidfile" ] && [ -r /proc/sysvipc/shm ] || return 0
  shmid=$(sed -n 7p "$pidfile" | awk '{print $2}')
  [ -n "$shmid" ] || return 0
  while :; do
    attached=$(awk -v id="$shmid" '$2 == id {print $7}' /proc/sysvipc/shm)
    if [ -z "$attached" ] || [ "$attached" = 0 ]; then
      return 0
    fi
    if [ $tries -eq 0 ]; then
      echo "postgres.sh: $attached process(es) of the previous server on $data still attached to its shared memory (id $shmid): waiting for them to exit"
    fi
    tries=$((tries + 1))
    if [ $tries -ge 600 ]; then
      echo "postgres.sh: after 60 s, $attached process(es) of the previous server still hold $data's shared memory (id $shmid); stop them (ps -ef | grep postgres) and start again" >&2
      exit 1
    fi
    sleep 0.1
  done
}
wait_for_old_children

# Stale pid files from a killed run are handled by postgres itself (it checks whether that pid still lives).
# Not through as_postgres: a backgrounded shell function runs in a forked subshell, and $! would be that
# subshell instead of postgres, so the fast-shutdown signal below would miss the server.
"${run_as[@]}" "$bindir/postgres" -D "$data" -p "$port" \
  -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories= \
  -c max_connections=200 \
  -c wal_level=$wal_level \
  -c max_wal_senders=10 \
  -c max_slot_wal_keep_size="${MAX_SLOT_WAL_KEEP_SIZE:-4GB}" \
  -c wal_compression=lz4 \
  -c logging_collector=off \
  ${extra[@]+"${extra[@]}"} &
pid=$!

trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
status=0
while :; do
  wait "$pid" && status=0 || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
