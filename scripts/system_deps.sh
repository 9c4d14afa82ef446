#!/usr/bin/env bash
# Install and start the system parts the tests use (Debian, as root): idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, installed only when missing:
#   stilts    votlint / datalinklint on every VOTable OPUS serves
#   graphviz  dot / sfdp, the PROV-SVG and PROV-PNG pictures
#   chromium  the browser tests/test_web_client.py drives (through Playwright)
packages=(stilts graphviz chromium)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# PostgreSQL is expected on 127.0.0.1:5432; start the local cluster if it is installed
# but stopped.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# A single-node SLURM cluster for tests/test_slurm_*.py (slurm-wlm + munge; both steps are
# idempotent, and start uses a working cluster another checkout already runs).
scripts/slurm_cluster.sh install
scripts/slurm_cluster.sh start
