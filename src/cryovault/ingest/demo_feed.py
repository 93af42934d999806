"""Live data for `cryovault demo` (SPEC OPS-1): a simulated EPU session and a simulated tilt
series written over time into the demo's data directory, each followed by a watcher that
registers the files into the demo's EPU run and Tomo run through the REST API — exactly what
a facility runs next to its microscopes.

The simulators run once (their output stays under `<data dir>/instrument/`); on later starts
only the watchers run again, registering nothing twice.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EPU_ARGS = ["--squares", "3", "--holes", "4", "--rate", "0.5", "--size", "512", "--frames", "8"]
TOMO_ARGS = ["--positions", "2", "--tilts", "-60:60:6", "--rate", "1", "--size", "256",
             "--frames", "4"]


@dataclass(frozen=True)
class DemoRun:
    kind: str  # "epu" | "tomo"
    dataset_id: str


def _command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("cryovault")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cryovault.cli import app; app()", *args]


def _session_dir(out: Path, kind: str, timeout_s: float = 120.0) -> Path | None:
    """The folder the watcher follows: the EPU session folder (the simulator names it as EPU
    does, so it is found once created) or the tomography folder itself."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if kind == "tomo" and out.is_dir():
            return out
        found = sorted(path for path in out.glob("*_EPU") if path.is_dir())
        if found:
            return found[0]
        time.sleep(0.5)
    return None


def _follow(run: DemoRun, out: Path, server: str, token: str,
            processes: list[subprocess.Popen], log_dir: Path) -> None:
    session = _session_dir(out, run.kind)
    if session is None:
        log.warning("demo: the %s simulator wrote no session folder in %s", run.kind, out)
        return
    with open(log_dir / f"watch-{run.kind}.log", "ab") as output:
        processes.append(subprocess.Popen(
            _command("watch", run.kind, str(session), "--dataset", run.dataset_id,
                     "--server", server, "--token", token,
                     "--state", str(log_dir / f"watch-{run.kind}.state.json")),
            stdout=output, stderr=subprocess.STDOUT))


def start_demo_feeds(data_dir: Path, runs: list[DemoRun], server: str,
                     token: str) -> list[subprocess.Popen]:
    """Start the simulators (first time only) and their watchers; returns the processes so
    that the caller can stop them when the portal stops."""
    instrument = data_dir / "instrument"
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    for run in runs:
        out = instrument / run.kind
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            args = EPU_ARGS if run.kind == "epu" else TOMO_ARGS
            with open(log_dir / f"simulate-{run.kind}.log", "ab") as output:
                processes.append(subprocess.Popen(
                    _command("simulate", run.kind, str(out), *args),
                    stdout=output, stderr=subprocess.STDOUT))
        threading.Thread(target=_follow, args=(run, out, server, token, processes, log_dir),
                         daemon=True,
                         name=f"demo-feed-{run.kind}").start()
    return processes


def stop_demo_feeds(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
