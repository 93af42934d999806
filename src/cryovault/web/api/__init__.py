"""JSON REST API, version 1 (mounted at /api/v1)."""

from fastapi import APIRouter

from cryovault.web.api import auth, elements, jobs, preferences, sharing, users

router = APIRouter(prefix="/api/v1")
for module in (auth, elements, sharing, jobs, users, preferences):
    router.include_router(module.router)
