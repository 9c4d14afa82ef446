#!/usr/bin/env python3
"""Refresh docs/gammapy_maps_preview.png (shown in the README) from a real test run.

    .venv/bin/python scripts/make_readme_preview.py

Runs the end-to-end test of tests/test_gammapy_maps.py on the SQLite server, which makes the
demo data, runs the gammapy_maps job through the API and checks the science; the test copies
the job's preview PNG to the path in OPUS_README_PREVIEW.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "gammapy_maps_preview.png"

if __name__ == "__main__":
    env = {**os.environ, "OPUS_README_PREVIEW": str(TARGET)}
    status = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/test_gammapy_maps.py::test_gammapy_maps_end_to_end[sqlite]"],
        cwd=ROOT, env=env)
    if status == 0:
        print(f"wrote {TARGET.relative_to(ROOT)}")
    sys.exit(status)
