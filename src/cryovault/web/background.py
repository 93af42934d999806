"""Work the portal process does beside requests: jobs, then tidying their leftovers."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI

from cryovault.jobs.runner import resume_pending, run_job
from cryovault.storage.cleanup import empty_trash, run_cleanup

log = logging.getLogger(__name__)


def run_job_and_tidy(app: FastAPI, job_id: uuid.UUID) -> None:
    """Run a job, then remove from storage the bytes it released (deletions)."""
    run_job(app.state.sessions, job_id)
    empty_trash(app.state.sessions, app.state.storages)


def start_up_work(app: FastAPI) -> None:
    resume_pending(app.state.sessions)
    try:
        report = run_cleanup(app.state.sessions, app.state.settings, app.state.storages)
        log.info("cleanup at start-up: %s", report)
    except Exception:  # tidying must never stop the portal from serving
        log.exception("the cleanup pass failed")
