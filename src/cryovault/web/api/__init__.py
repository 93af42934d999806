"""JSON REST API, version 1 (mounted at /api/v1)."""

from fastapi import APIRouter

from cryovault.web.api import (
    admin,
    auth,
    discovery,
    elements,
    files,
    jobs,
    lifecycle,
    metadata,
    notes,
    preferences,
    runs,
    samples,
    search,
    sharing,
    storages,
    uploads,
    users,
    viewers,
)

router = APIRouter(prefix="/api/v1")
for module in (auth, elements, files, viewers, uploads, storages, sharing, jobs, users, preferences,
               metadata, notes, samples, search, admin, lifecycle, runs, discovery):
    router.include_router(module.router)
