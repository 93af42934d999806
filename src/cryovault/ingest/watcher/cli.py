"""`cryovault watch epu|tomo`: the ingest watcher's command line (SPEC SPA-1, ET-1)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer

from cryovault.ingest.watcher.agent import Watcher, WatchOptions
from cryovault.ingest.watcher.layout import SessionLayout
from cryovault.ingest.watcher.state import default_state_path

watch_app = typer.Typer(
    help="Watch an acquisition folder and register its files in a run dataset as they are "
         "written (restartable; each file is registered once).", no_args_is_help=True)

DEFAULT_SERVER = "http://127.0.0.1:8000"

Dataset = Annotated[str, typer.Option("--dataset", help="the run dataset's id (UUID)")]
Server = Annotated[str, typer.Option("--server", help="the portal's address")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="CRYOVAULT_TOKEN", show_envvar=True, show_default=False,
    help="API token (create one in the portal or with POST /api/v1/auth/tokens)")]
Once = Annotated[bool, typer.Option("--once", help="register what is complete now and exit")]
Interval = Annotated[float, typer.Option("--interval", min=0.05, help="seconds between scans")]
Settle = Annotated[float, typer.Option("--settle", min=0.0, help="seconds a file's size and "
                                       "mtime must stay unchanged")]
MovieSettle = Annotated[float, typer.Option(
    "--movie-settle", min=0.0, help="seconds a movie must stay unchanged when its acquisition "
    "metadata (frame count) is not there yet")]
StateFile = Annotated[Path | None, typer.Option(
    "--state", help="local state file (default: $XDG_STATE_HOME/cryovault/"
    "watch-<dataset>.json)", show_default=False)]
Workers = Annotated[int, typer.Option("--workers", min=1, max=32, help="upload threads")]
Progress = Annotated[float, typer.Option("--progress-every", min=1.0,
                                         help="seconds between progress lines")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="log every registered file")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


def _check_server(server: str) -> str:
    try:
        url = httpx.URL(server)
    except Exception:  # httpx.InvalidURL and friends
        raise _fail(f"--server {server!r} is not a URL; write e.g. {DEFAULT_SERVER}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise _fail(f"--server {server!r} is not an http(s) address; write e.g. "
                    f"{DEFAULT_SERVER}")
    return str(url).rstrip("/")


def _check_dataset(dataset: str) -> str:
    try:
        return str(uuid.UUID(dataset.strip()))
    except ValueError:
        raise _fail(f"--dataset {dataset!r} is not a dataset id: give the run dataset's UUID "
                    "(shown in the portal's address bar)") from None


def _check_folder(path: Path, what: str) -> Path:
    if not path.exists():
        raise _fail(f"{what} {path} does not exist")
    if not path.is_dir():
        raise _fail(f"{what} {path} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise _fail(f"{what} {path} cannot be read (permissions)")
    return path.resolve()


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("cryovault.watch")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run(layout: SessionLayout, dataset: str, server: str, token: str | None, once: bool,
         interval: float, settle: float, movie_settle: float, state: Path | None,
         workers: int, progress_every: float, verbose: bool) -> None:
    dataset_id = _check_dataset(dataset)
    server_url = _check_server(server)
    if not token or not token.strip():
        raise _fail("no API token: pass --token or set CRYOVAULT_TOKEN (create a token in the "
                    "portal, or with POST /api/v1/auth/tokens)")
    _configure_logging(verbose)
    options = WatchOptions(
        server=server_url, token=token.strip(), dataset_id=dataset_id,
        state_path=state or default_state_path(dataset_id), once=once, interval_s=interval,
        settle_s=settle, movie_settle_s=movie_settle, workers=workers,
        progress_every_s=progress_every, retry_limit_s=60.0 if once else None)
    stop = threading.Event()
    watcher = Watcher(layout, options, stop=stop)
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        report = watcher.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if report.fatal:
        raise _fail(report.fatal, code=1)


@watch_app.command("epu")
def watch_epu(
    session_dir: Annotated[Path, typer.Argument(help="the EPU session folder (holding "
                                                "EpuSession.dm)", show_default=False)],
    dataset: Dataset,
    movies: Annotated[Path | None, typer.Option(
        "--movies", help="folder where EPU writes the movies, if not the session folder "
        "(same subtree)")] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    once: Once = False,
    interval: Interval = 2.0,
    settle: Settle = 1.0,
    movie_settle: MovieSettle = 10.0,
    state: StateFile = None,
    workers: Workers = 4,
    progress_every: Progress = 30.0,
    verbose: Verbose = False,
) -> None:
    """Register an EPU session (session file, atlas, grid squares, foil holes, acquisitions
    and their movies) in an EPU run dataset."""
    from cryovault.ingest.watcher.epu import EpuLayout

    folder = _check_folder(session_dir, "session folder")
    movies_folder = _check_folder(movies, "movies folder") if movies is not None else None
    _run(EpuLayout(folder, movies_folder), dataset, server, token, once, interval, settle,
         movie_settle, state, workers, progress_every, verbose)


@watch_app.command("tomo")
def watch_tomo(
    directory: Annotated[Path, typer.Argument(help="the tomography acquisition folder (.mdoc "
                                              "files and tilt movies)", show_default=False)],
    dataset: Dataset,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    once: Once = False,
    interval: Interval = 2.0,
    settle: Settle = 1.0,
    movie_settle: MovieSettle = 10.0,
    state: StateFile = None,
    workers: Workers = 4,
    progress_every: Progress = 30.0,
    verbose: Verbose = False,
) -> None:
    """Register a tomography acquisition (.mdoc per position and one movie per tilt) in a Tomo
    run dataset."""
    from cryovault.ingest.watcher.tomo import TomoLayout

    folder = _check_folder(directory, "acquisition folder")
    _run(TomoLayout(folder), dataset, server, token, once, interval, settle, movie_settle,
         state, workers, progress_every, verbose)
