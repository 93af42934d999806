"""JSON REST API, version 1 (mounted at /api/v1)."""

from fastapi import APIRouter

from cryovault.web.api import (
    auth,
    elements,
    files,
    jobs,
    preferences,
    sharing,
    storages,
    uploads,
    users,
)

router = APIRouter(prefix="/api/v1")
for module in (auth, elements, files, uploads, storages, sharing, jobs, users, preferences):
    router.include_router(module.router)
