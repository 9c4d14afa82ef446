#!/usr/bin/env bash
# Install OPUS with its test dependencies (and the gammapy extra, for the gammapy_maps
# activity's tests) and run the whole test suite.
#
# As root on Debian (CI), it also installs and starts what the tests need from the system
# (scripts/system_deps.sh: the stilts package for votlint):
# PostgreSQL must already run on 127.0.0.1:5432 (user postgres, trust auth); a single-node
# SLURM cluster is installed and started (scripts/system_deps.sh, scripts/slurm_cluster.sh).
# Elsewhere, tests of a missing component are skipped (pytest -rs lists them); set
# OPUS_REQUIRE_POSTGRES=1 / OPUS_REQUIRE_SLURM=1 / OPUS_REQUIRE_STILTS=1 to make them fail
# instead.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test,gammapy]'

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    scripts/system_deps.sh
fi

# Type checks first (strict on opus/, configured in pyproject.toml): seconds, and a type
# error is as much a failure as a failing test.
.venv/bin/mypy

exec .venv/bin/python -m pytest -q "$@"
