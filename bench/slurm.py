"""What OPUS adds to a trivial job on SLURM, beside SLURM's own sbatch-to-completion time.

    .venv/bin/python bench/slurm.py [--trials 10] [--poll 0.05] [--json PATH]

Needs a working SLURM cluster whose nodes see this checkout (``scripts/slurm_cluster.sh
start`` as root gives a single-node one). In the same run, alternating trial by trial:

* **raw SLURM**: ``sbatch --parsable --no-requeue --output=FILE /bin/true`` (a batch script
  that runs ``/bin/true``), then ``scontrol show job -o ID`` every ``--poll`` seconds until
  the job state is final: what a client of bare SLURM sees, with fair, fast polling;
* **OPUS**: ``POST /rest/echo`` with ``PHASE=RUN`` to an ``opus serve`` started here with
  ``OPUS_MANAGER=slurm``, then blocking ``WAIT`` requests until the phase is COMPLETED: the
  scheduler submits the runner with sbatch, the runner runs the activity, hashes the output,
  records the execution context and reports back, and the server records the provenance.

Before each trial the bench waits until squeue shows no job, so every trial starts on an idle
node. It prints the median, mean and spread of both, and the difference of the medians: the
overhead OPUS adds. It is a benchmark, not a test: it always exits 0 once it has measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
UWS_NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
FINAL_SLURM = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
               "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def wait_idle(timeout: float = 30.0) -> None:
    """Until squeue shows no job at all (a finishing job would delay the next start)."""
    deadline = time.monotonic() + timeout
    while run(["squeue", "-h", "-o", "%i"]).strip():
        if time.monotonic() > deadline:
            raise SystemExit("the cluster does not become idle: " + run(["squeue"]))
        time.sleep(0.05)
    time.sleep(0.2)


# -- raw SLURM --------------------------------------------------------------------------------
def raw_trial(work: Path, poll: float) -> float:
    script = work / "true.sh"
    script.write_text("#!/bin/sh\nexec /bin/true\n")
    script.chmod(0o755)
    started = time.monotonic()
    out = run(["sbatch", "--parsable", "--no-requeue", "--job-name=bench-raw",
               f"--chdir={work}", f"--output={work / 'raw.log'}", str(script)])
    job_id = out.strip().split(";")[0]
    while True:
        record = run(["scontrol", "show", "job", "-o", job_id])
        state = record.split("JobState=", 1)[1].split()[0] if "JobState=" in record else ""
        if state in FINAL_SLURM:
            elapsed = time.monotonic() - started
            if state != "COMPLETED":
                raise SystemExit(f"raw job {job_id} ended as {state}")
            return elapsed
        time.sleep(poll)


# -- OPUS -------------------------------------------------------------------------------------
class Opus:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OPUS_DATA_DIR": str(data_dir), "OPUS_MANAGER": "slurm",
               "OPUS_BASE_URL": self.url, "OPUS_LOG_LEVEL": "WARNING"}
        env.pop("OPUS_DATABASE_URL", None)
        env.pop("OPUS_CONFIG", None)
        self.log_path = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "opus.cli", "serve", "--port", str(self.port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise SystemExit("opus serve exited:\n" + self.log_path.read_text())
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("opus serve did not start:\n" + self.log_path.read_text())
                time.sleep(0.1)

    def trial(self) -> float:
        data = urllib.parse.urlencode({"text": "x", "PHASE": "RUN"}).encode()
        started = time.monotonic()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(urllib.request.Request(f"{self.url}/rest/echo", data=data), timeout=30)
            raise SystemExit("job creation did not redirect")
        except urllib.error.HTTPError as answer:
            if answer.code != 303:
                raise SystemExit(f"job creation: HTTP {answer.code}")
            job_url = answer.headers["Location"]
        while True:
            with urllib.request.urlopen(f"{job_url}?WAIT=30", timeout=60) as response:
                document = etree.fromstring(response.read())
            phase = document.findtext("uws:phase", namespaces=UWS_NS)
            if phase not in {"PENDING", "QUEUED", "EXECUTING"}:
                elapsed = time.monotonic() - started
                if phase != "COMPLETED":
                    raise SystemExit(f"OPUS job ended as {phase}: {etree.tostring(document)!r}")
                return elapsed

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def describe(values: list[float]) -> str:
    return (f"median {statistics.median(values):6.3f} s   mean {statistics.mean(values):6.3f} s"
            f"   min {min(values):6.3f} s   max {max(values):6.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between scontrol polls of the raw job (default 0.05)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("no sbatch: start a cluster first (scripts/slurm_cluster.sh start)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        raise SystemExit(f"slurmctld does not answer: {ping.stdout}{ping.stderr}")

    work = Path(tempfile.mkdtemp(prefix="opus-bench-slurm-"))
    server = Opus(work / "opus")
    raw: list[float] = []
    opus: list[float] = []
    try:
        log("warming up (one job of each, not counted)")
        wait_idle()
        raw_trial(work, args.poll)
        wait_idle()
        server.trial()
        for i in range(args.trials):
            wait_idle()
            raw.append(raw_trial(work, args.poll))
            wait_idle()
            opus.append(server.trial())
            log(f"trial {i + 1}/{args.trials}: raw SLURM {raw[-1]:.3f} s, OPUS {opus[-1]:.3f} s")
    finally:
        server.stop()
    overhead = statistics.median(opus) - statistics.median(raw)
    print(f"SLURM {run(['sinfo', '-V']).strip()}, {args.trials} trials each, "
          f"alternating, idle node before each")
    print(f"raw SLURM  sbatch /bin/true -> COMPLETED (scontrol every {args.poll:g} s): "
          f"{describe(raw)}")
    print(f"OPUS       POST echo PHASE=RUN -> COMPLETED (WAIT):           {describe(opus)}")
    print(f"overhead OPUS adds (difference of the medians): {overhead:+.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"raw": raw, "opus": opus, "overhead": overhead,
                                         "poll": args.poll}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
