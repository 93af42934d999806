"""`cryovault watch epu|tomo`: clear messages for bad arguments, exit codes against a fake
server (the command runs in its own process, as it does next to a microscope)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryovault.cli import app
from tests.ingest.test_watcher_agent import (  # noqa: F401 (fixtures)
    DATASET,
    EXPECTED,
    SESSION,
    TOKEN,
    FakeIngest,
    fake,
    server,
    visit,
)

runner = CliRunner()
CRYOVAULT = [sys.executable, "-m", "cryovault.cli"]


def _invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env or {"CRYOVAULT_TOKEN": ""})


@pytest.mark.parametrize("args,words", [
    (["watch", "epu", "{missing}", "--dataset", DATASET, "--token", "t"],
     ["session folder", "does not exist"]),
    (["watch", "tomo", "{file}", "--dataset", DATASET, "--token", "t"],
     ["is not a folder"]),
    (["watch", "epu", "{dir}", "--dataset", "run-42", "--token", "t"],
     ["--dataset 'run-42' is not a dataset id", "UUID"]),
    (["watch", "epu", "{dir}", "--dataset", DATASET, "--token", "t", "--server", "localhost"],
     ["--server 'localhost' is not an http(s) address", "http://127.0.0.1:8000"]),
    (["watch", "tomo", "{dir}", "--dataset", DATASET, "--token", "t", "--server",
      "ftp://host/"], ["not an http(s) address"]),
    (["watch", "epu", "{dir}", "--dataset", DATASET], ["no API token", "CRYOVAULT_TOKEN"]),
    (["watch", "epu", "{dir}", "--dataset", DATASET, "--token", "t", "--movies", "{missing}"],
     ["movies folder", "does not exist"]),
])
def test_bad_arguments_get_a_clear_message(tmp_path, args, words):
    (tmp_path / "file").write_text("x")
    values = {"missing": str(tmp_path / "nope"), "file": str(tmp_path / "file"),
              "dir": str(tmp_path)}
    result = _invoke(*[a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


def _run(*args: str, token: str = TOKEN, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "CRYOVAULT_TOKEN": token}
    return subprocess.run([*CRYOVAULT, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def test_once_exits_zero_then_refuses_a_bad_token(visit, tmp_path, server, fake):  # noqa: F811
    common = ["watch", "epu", str(visit / SESSION), "--dataset", DATASET, "--server", server,
              "--once", "--settle", "0.1", "--state", str(tmp_path / "state.json")]
    done = _run(*common)
    assert done.returncode == 0, done.stderr
    assert "done: registered 9 files" in done.stderr
    assert fake.registered_paths() == [p for p in EXPECTED if not p.endswith(".tiff")]
    refused = _run(*common, token="not-the-token")
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the server") and "refused the API token" in last
    assert "Traceback" not in refused.stderr


def test_sigterm_stops_the_watcher_cleanly(visit, tmp_path, server, fake):  # noqa: F811
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [*CRYOVAULT, "watch", "epu", str(visit / SESSION), "--dataset", DATASET, "--server",
         server, "--settle", "0.1", "--interval", "0.2", "--state", str(state)],
        env={**os.environ, "CRYOVAULT_TOKEN": TOKEN}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(fake.registered_paths()) < 9:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "done: registered 9 files" in stderr
    assert Path(state).exists()
