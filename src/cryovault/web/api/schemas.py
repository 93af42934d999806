"""Pydantic models of the API's bodies: the stable v1 contract of DESIGN.md."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cryovault.access.sharing import Sharing
from cryovault.db.users import User
from cryovault.errors import NotFound
from cryovault.jobs.records import JobView
from cryovault.workspace.views import ElementView, PathEntry

ElementKind = Literal["folder", "workflow", "step", "dataset", "file"]
WorkflowType = str  # validated against the template registry, which plugins extend
DatasetType = Literal["free", "epu_run", "tomo_run", "lp_run"]


def parse_id(value: str, what: str = "element") -> uuid.UUID:
    """Ids in paths: a malformed one names nothing, so it is a 404 like an unknown one."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError):
        raise NotFound(f"no {what} with id {value!r}") from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    username: str = Field(description="username or e-mail address", max_length=320)
    password: str = Field(max_length=1024)


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str | None
    first_name: str
    last_name: str
    roles: list[str]
    is_builtin: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, email=user.email,
                   first_name=user.first_name, last_name=user.last_name,
                   roles=sorted(user.role_names), is_builtin=user.is_builtin)


class LoginOut(BaseModel):
    user: UserOut


class TokenIn(Strict):
    name: str = Field(max_length=255)


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None


class NewTokenOut(TokenOut):
    token: str


class ElementIn(Strict):
    kind: ElementKind
    name: str = Field(max_length=10_000)
    parent_id: uuid.UUID | None = None
    description: str = Field(default="", max_length=100_000)
    workflow_type: WorkflowType | None = None
    dataset_type: str | None = None


class ElementPatch(Strict):
    name: str | None = Field(default=None, max_length=10_000)
    description: str | None = Field(default=None, max_length=100_000)
    status: str | None = None
    workflow_type: str | None = None
    dataset_type: str | None = None


class ElementOut(BaseModel):
    id: uuid.UUID
    kind: str
    name: str
    parent_id: uuid.UUID | None
    description: str | None
    status: str | None
    workflow_type: str | None
    dataset_type: str | None
    position: int | None
    creator: str | None
    created_at: datetime | None
    updated_at: datetime | None
    access: Literal["viewer", "collaborator", "owner", "card"]

    @classmethod
    def of(cls, view: ElementView) -> ElementOut:
        el = view.element
        if view.is_card:  # a bare card: title only, no content (AC-4)
            return cls(id=el.id, kind=el.kind, name=el.name, parent_id=el.parent_id,
                       description=None, status=view.status, workflow_type=None,
                       dataset_type=None, position=None, creator=None, created_at=None,
                       updated_at=None, access="card")
        return cls(id=el.id, kind=el.kind, name=el.name, parent_id=el.parent_id,
                   description=el.description, status=view.status,
                   workflow_type=el.workflow_type, dataset_type=el.dataset_type,
                   position=el.position, creator=view.creator, created_at=el.created_at,
                   updated_at=el.updated_at, access=view.access)  # type: ignore[arg-type]


class ElementPage(BaseModel):
    items: list[ElementOut]
    next_cursor: str | None


class PathEntryOut(BaseModel):
    id: uuid.UUID
    kind: str
    name: str

    @classmethod
    def of(cls, entry: PathEntry) -> PathEntryOut:
        return cls(id=entry.id, kind=entry.kind, name=entry.name)


class DeletionOut(BaseModel):
    job_id: uuid.UUID


class GrantIO(Strict):
    username: str = Field(max_length=150)
    level: Literal["viewer", "collaborator", "owner"]


class GrantOut(GrantIO):
    display_name: str = ""


class SharingIn(Strict):
    privacy: Literal["private", "public"]
    everybody: Literal["viewer", "collaborator"] | None = None
    inherited: bool | None = Field(default=None, description="ignored: a PUT always breaks it")
    grants: list[GrantIO] = Field(max_length=10_000)


class SharingOut(BaseModel):
    privacy: str
    everybody: str | None
    inherited: bool
    inherited_from: PathEntryOut | None
    grants: list[GrantOut]
    can_edit: bool

    @classmethod
    def of(cls, sharing: Sharing) -> SharingOut:
        source = None
        if sharing.inherited_from_id is not None:
            source = PathEntryOut(id=sharing.inherited_from_id, kind="",
                                  name=sharing.inherited_from_name or "")
        return cls(privacy=sharing.privacy, everybody=sharing.everybody,
                   inherited=sharing.inherited, inherited_from=source,
                   grants=[GrantOut(username=g.username, level=g.level,  # type: ignore[arg-type]
                                    display_name=g.display_name) for g in sharing.grants],
                   can_edit=sharing.can_edit)


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str
    status: str
    element_id: uuid.UUID | None
    element_name: str
    user: str | None
    progress: float
    message: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, view: JobView) -> JobOut:
        job = view.job
        return cls(id=job.id, kind=job.kind, status=job.status, element_id=view.element_id,
                   element_name=view.element_name, user=view.username, progress=job.progress,
                   message=job.message, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at)


class JobList(BaseModel):
    items: list[JobOut]


class UserBrief(BaseModel):
    username: str
    display_name: str
    email: str | None


class PlatformPreferencesIO(BaseModel):
    max_folder_depth: int
    export_public_path: str


class PlatformPreferencesPatch(Strict):
    max_folder_depth: int | None = None
    export_public_path: str | None = None
