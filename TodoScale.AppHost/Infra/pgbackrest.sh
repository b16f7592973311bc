#!/usr/bin/env bash
# Readies pgBackRest for the AppHost's process-mode primary, then exits 0; the archiver (which takes the backups)
# waits for it.
#
#   pgbackrest.sh <config> <primary-port>
#
# stanza-create (idempotent: a kept repository of this cluster is found valid), then check: pgBackRest connects to the
# primary, forces a WAL switch and waits until that segment is in the repository, so "finished" means WAL archiving
# works. A repository left by an earlier cluster (the primary's folder was removed, the backups kept) is never
# overwritten: it is moved aside, named after the time, and a new one is made.
set -euo pipefail

config=${1:?pgBackRest config}
port=${2:?primary port}

if [ "$(id -u)" = 0 ]; then
  run_as=(setpriv --reuid=postgres --regid=postgres --init-groups)
else
  run_as=()
fi
pgbackrest() { "${run_as[@]}" pgbackrest --config="$config" --stanza=todos --pg1-port="$port" --log-level-console=warn "$@"; }

if ! output=$(pgbackrest stanza-create 2>&1); then
  if printf '%s' "$output" | grep -q 'do not match the database'; then
    repo=$(awk -F= '/^repo1-path=/ {print $2}' "$config")
    aside="$repo.earlier-cluster.$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$repo" "$aside"
    mkdir -p "$repo"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$repo"
    echo "pgbackrest.sh: the repository held an earlier cluster's backups; moved to $aside, starting a new one"
    pgbackrest stanza-create
  else
    printf '%s\n' "$output" >&2
    exit 1
  fi
fi
pgbackrest check
echo "pgbackrest.sh: stanza todos ready, WAL archiving checked (repository $(awk -F= '/^repo1-path=/ {print $2}' "$config"))"
