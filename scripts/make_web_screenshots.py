#!/usr/bin/env python3
"""Refresh the README's screenshots of the web client (docs/web-*.png) from a real run.

    .venv/bin/python scripts/make_web_screenshots.py

Runs the gammapy_maps test of tests/test_web_client.py in Chromium (Debian's, driven by
Playwright): it makes the demo DL3 data, fills the gammapy_maps form, follows the job to
COMPLETED and opens its provenance; with OPUS_WEB_DOCS set it keeps docs/web-home.png,
docs/web-job-gammapy.png and docs/web-provenance.png.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs"

if __name__ == "__main__":
    env = {**os.environ, "OPUS_WEB_DOCS": str(TARGET), "OPUS_REQUIRE_BROWSER": "1",
           "OPUS_REQUIRE_GAMMAPY": "1"}
    status = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/test_web_client.py::test_a_gammapy_maps_job_page_shows_its_products"],
        cwd=ROOT, env=env)
    if status == 0:
        print(f"wrote {', '.join(f'docs/web-{n}.png' for n in ('home', 'job-gammapy', 'provenance'))}")
    sys.exit(status)
