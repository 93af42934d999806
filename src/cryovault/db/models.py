"""Every model, imported in one place so the metadata is complete (Alembic, create_all)."""

from cryovault.db.base import Base
from cryovault.db.elements import Acl, AclGrant, Element, ElementAncestor, RecentVisit
from cryovault.db.files import StoredFile, Upload
from cryovault.db.jobs import Job
from cryovault.db.preferences import PlatformPreference, UserPreference
from cryovault.db.users import ApiToken, LoginSession, User, UserRole

__all__ = [
    "Acl", "AclGrant", "ApiToken", "Base", "Element", "ElementAncestor", "Job", "LoginSession",
    "PlatformPreference", "RecentVisit", "StoredFile", "Upload", "User", "UserPreference",
    "UserRole",
]
