"""FastAPI application factory: mounts the API and the portal pages."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cryovault import __version__
from cryovault.access.config import AccessConfig
from cryovault.db.engine import make_engine, make_sessionmaker
from cryovault.db.migrate import upgrade
from cryovault.jobs.runner import Worker
from cryovault.lifecycle import archive, export  # noqa: F401  (registers their jobs)
from cryovault.plugins import activate_plugins
from cryovault.search import jobs as search_jobs  # noqa: F401  (registers the reindex job handler)
from cryovault.settings import Settings
from cryovault.storage.registry import StorageSet
from cryovault.web import errors
from cryovault.web.api import router as api_router
from cryovault.web.background import job_environment, start_up_work
from cryovault.web.ui import routers as ui_routers
from cryovault.web.ui.common import UI_DIR
from cryovault.workspace import deletion  # noqa: F401  (registers the deletion job handler)


def create_app(settings: Settings | None = None, *, resume_jobs: bool = True) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.effective_database_url)
    if settings.auto_upgrade:
        upgrade(engine)
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Objects made at start-up live as long as the process: keep them out of the garbage
        # collector's full passes, which otherwise show as tens of ms in the slowest requests.
        gc.freeze()
        worker = None
        if resume_jobs:
            # The cleanup pass removes what a crash or a cancelled upload left behind; the job
            # worker runs jobs a crashed process left, and those nobody ran yet (OPS-3).
            threading.Thread(target=start_up_work, args=(app,), name="cryovault-start-up",
                             daemon=True).start()
            worker = Worker(job_environment(app)).start()
            app.state.job_worker = worker  # the Health tab reports whether it runs
        yield
        if worker is not None:
            worker.stop()
        engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="cryovault",
        version=__version__,
        description="Data management and workflow orchestration for cryo-EM facilities.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.storages = StorageSet.from_settings(settings)
    app.state.access = AccessConfig.from_settings(settings)
    activate_plugins()
    errors.install(app)
    app.include_router(api_router)
    for router in ui_routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=UI_DIR / "static"), name="static")

    return app
