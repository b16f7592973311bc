#!/usr/bin/env bash
# PgBouncer for the AppHost's process mode (--Infra:Pooler=pgbouncer), from the local install.
#
#   pgbouncer.sh <pgbouncer.ini>
#
# The AppHost writes the ini and its auth file (PgBouncerConfig) before every start. Runs PgBouncer as the
# `postgres` user when started as root (PgBouncer refuses root), its folder handed to that user. DCP stops a
# resource with SIGTERM, which PgBouncer takes as an immediate shutdown: its clients are disconnected at once.
set -euo pipefail

ini=${1:?pgbouncer.ini}
bin=$(command -v pgbouncer || true)
[ -n "$bin" ] || bin=/usr/sbin/pgbouncer # Debian installs it outside a non-root user's PATH
if [ ! -x "$bin" ]; then
  echo "pgbouncer.sh: PgBouncer is not installed (apt-get install pgbouncer; ./build.sh installs it)" >&2
  exit 1
fi

if [ "$(id -u)" = 0 ]; then
  chown -R postgres:postgres "$(dirname "$ini")"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin" "$ini"
fi
exec "$bin" "$ini"
