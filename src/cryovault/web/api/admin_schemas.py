"""Bodies of the administration API: users, roles, licence seats, licences, user preferences."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cryovault.access.administration import AdminUser, DirectoryCandidate, Summary
from cryovault.access.licences import FeatureStatus, LicenseState, LicenseStatus
from cryovault.access.users import DIRECTORY_SOURCE
from cryovault.web.api.schemas import Strict


class AdminUserOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str | None
    first_name: str
    last_name: str
    source: Literal["local", "directory"]
    is_active: bool
    is_builtin: bool
    roles: list[str]
    available_roles: list[str] = Field(description="roles the user does not hold yet")
    licenses: list[str] = Field(description="licensed features the user holds a seat of")
    created_at: datetime

    @classmethod
    def of(cls, item: AdminUser) -> AdminUserOut:
        u = item.user
        return cls(id=u.id, username=u.username, email=u.email, first_name=u.first_name,
                   last_name=u.last_name,
                   source="directory" if u.source == DIRECTORY_SOURCE else "local",
                   is_active=u.is_active, is_builtin=u.is_builtin, roles=item.roles,
                   available_roles=[] if u.is_builtin else item.missing_roles,
                   licenses=list(item.licences), created_at=u.created_at)


class SummaryOut(BaseModel):
    users: int = Field(description="accounts, the built-in admin not counted")
    active_users: int
    licenses_free: int | None = Field(description="free portal seats; null: not enforced")
    licenses_total: int | None

    @classmethod
    def of(cls, s: Summary) -> SummaryOut:
        return cls(users=s.users, active_users=s.active_users, licenses_free=s.licences_free,
                   licenses_total=s.licences_total)


class AdminUserList(BaseModel):
    summary: SummaryOut
    items: list[AdminUserOut]


class NewUserIn(Strict):
    source: Literal["local", "directory"] = "local"
    username: str = Field(max_length=150)
    email: str | None = Field(default=None, max_length=320)
    first_name: str = Field(default="", max_length=1000)
    last_name: str = Field(default="", max_length=1000)
    password: str | None = Field(default=None, max_length=2048)
    password_confirmation: str | None = Field(default=None, max_length=2048)


class UserPatch(Strict):
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=1000)
    last_name: str | None = Field(default=None, max_length=1000)
    password: str | None = Field(default=None, max_length=2048)
    password_confirmation: str | None = Field(default=None, max_length=2048)
    is_active: bool | None = None


class RoleIn(Strict):
    role: str = Field(max_length=100)


class LicenseSeatIn(Strict):
    feature: str = Field(max_length=100)


class DirectoryUserOut(BaseModel):
    username: str
    email: str | None
    first_name: str
    last_name: str
    display_name: str
    already_added: bool

    @classmethod
    def of(cls, c: DirectoryCandidate) -> DirectoryUserOut:
        e = c.entry
        return cls(username=e.username, email=e.email, first_name=e.first_name,
                   last_name=e.last_name, display_name=e.display_name,
                   already_added=c.already_added)


class DirectoryResults(BaseModel):
    items: list[DirectoryUserOut]


class LicenseKeyIn(Strict):
    key: str = Field(max_length=100_000, description="the licence key as received")


class FeatureOut(BaseModel):
    feature: str
    label: str
    seats: int
    used: int
    free: int
    expires_at: datetime | None
    state: str
    messages: list[str]

    @classmethod
    def of(cls, f: FeatureStatus) -> FeatureOut:
        return cls(feature=f.feature, label=f.label, seats=f.seats, used=f.used, free=f.free,
                   expires_at=f.expires_at, state=f.state, messages=list(f.messages))


class LicenseOut(BaseModel):
    id: uuid.UUID
    customer: str
    platform_id: str
    features: dict[str, int]
    issued_at: datetime
    expires_at: datetime
    installed_at: datetime
    state: str
    messages: list[str]

    @classmethod
    def of(cls, s: LicenseState) -> LicenseOut:
        r = s.row
        return cls(id=r.id, customer=r.customer, platform_id=r.platform_id,
                   features=s.features, issued_at=r.issued_at, expires_at=r.expires_at,
                   installed_at=r.installed_at, state=s.state, messages=list(s.messages))


class LicenseFileOut(LicenseOut):
    document: str = Field(description="the signed licence document (JSON), verbatim")
    key: str


class InstalledOut(LicenseOut):
    seats_given: int = Field(description="users that got a portal seat with this first licence")
    users_without_seat: int


class LicenseStatusOut(BaseModel):
    platform_id: str
    enforced: bool = Field(description="whether seats are enforced (a licence is installed)")
    key_configured: bool
    key_problem: str | None
    features: list[FeatureOut]
    licenses: list[LicenseOut]

    @classmethod
    def of(cls, s: LicenseStatus) -> LicenseStatusOut:
        return cls(platform_id=s.platform_id, enforced=s.enforced,
                   key_configured=s.key_configured, key_problem=s.key_problem,
                   features=[FeatureOut.of(f) for f in s.features],
                   licenses=[LicenseOut.of(x) for x in s.licenses])


class UserPreferencesIO(BaseModel):
    language: str
    date_format: str


class UserPreferencesPatch(Strict):
    language: str | None = Field(default=None, max_length=20)
    date_format: str | None = Field(default=None, max_length=20)


class PluginOut(BaseModel):
    name: str
    type: str
    version: str
    package: str
    description: str
    state: str
    message: str
