"""Work the portal process does beside requests: jobs, then tidying their leftovers."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI

from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.storage.cleanup import empty_trash, run_cleanup

log = logging.getLogger(__name__)


def job_environment(app: FastAPI) -> JobEnvironment:
    return JobEnvironment(app.state.sessions, app.state.settings, app.state.storages)


def run_job_and_tidy(app: FastAPI, job_id: uuid.UUID) -> None:
    """Run a job at once (unless a worker already took it), then remove from storage the bytes
    it released (deletions)."""
    run_job(job_environment(app), job_id)
    empty_trash(app.state.sessions, app.state.storages)


def start_up_work(app: FastAPI) -> None:
    """The cleanup pass (the job worker takes care of jobs left behind)."""
    try:
        report = run_cleanup(app.state.sessions, app.state.settings, app.state.storages)
        log.info("cleanup at start-up: %s", report)
    except Exception:  # tidying must never stop the portal from serving
        log.exception("the cleanup pass failed")
