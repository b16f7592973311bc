#!/usr/bin/env bash
# Runs once when the primary container initialises its data folder: let the replica container connect for
# streaming replication (the image's pg_hba.conf only admits replication from localhost).
set -euo pipefail
echo "host replication postgres all scram-sha-256" >> "$PGDATA/pg_hba.conf"
