#!/usr/bin/env bash
# Install and start the system parts the tests use (Debian, as root): idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL is expected on 127.0.0.1:5432; start the local cluster if it is installed
# but stopped.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
