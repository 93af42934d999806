"""Every model, imported in one place so the metadata is complete (Alembic, create_all)."""

from cryovault.db.base import Base
from cryovault.db.elements import Acl, AclGrant, Element, ElementAncestor, RecentVisit
from cryovault.db.files import StorageTrash, StoredFile, Upload
from cryovault.db.jobs import Job
from cryovault.db.licenses import InstalledLicense, UserLicense
from cryovault.db.metadata import MetadataEntry
from cryovault.db.notes import ElementReference, Note
from cryovault.db.preferences import PlatformPreference, UserPreference
from cryovault.db.runs import (
    Atlas,
    FoilHole,
    GridSquare,
    Micrograph,
    RunFile,
    RunFileTombstone,
    RunSession,
    Tilt,
    TiltSeries,
)
from cryovault.db.search import SearchDocument
from cryovault.db.users import ApiToken, LoginSession, User, UserRole

__all__ = [
    "Acl", "AclGrant", "ApiToken", "Atlas", "FoilHole", "GridSquare", "Micrograph", "RunFile",
    "RunFileTombstone", "RunSession", "Tilt", "TiltSeries", "Base", "Element", "ElementAncestor",
    "ElementReference", "Job",
    "InstalledLicense", "LoginSession", "MetadataEntry", "Note", "SearchDocument",
    "PlatformPreference", "RecentVisit", "StorageTrash", "StoredFile", "Upload", "User",
    "UserLicense", "UserPreference", "UserRole",
]
