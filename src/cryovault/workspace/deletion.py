"""Deletion of an element and its whole subtree (SPEC WS-6): marked at once, removed by a job."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import OWNER
from cryovault.db.base import utcnow
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.files import StorageTrash, StoredFile
from cryovault.db.jobs import Job
from cryovault.db.runs import RunFile
from cryovault.errors import Conflict, Invalid
from cryovault.jobs.records import create_job
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.workspace.templates import get_template

DELETE_JOB = "delete"


def request_deletion(db: Session, actor: Actor, element_id: uuid.UUID) -> Job:
    """Mark the subtree as deleting (greyed out, 409 on use) and register the deletion job."""
    element, _ = require_access(db, actor, element_id, OWNER, "delete")
    if element.kind == "step" and element.parent_id is not None:
        workflow = db.get(Element, element.parent_id)
        if workflow is not None and get_template(workflow.workflow_type or "free").steps:
            raise Invalid("the steps of a template workflow cannot be deleted on their own; "
                          "delete the workflow or the step's datasets and files")
    # The flag on the element itself is set first and guarded, so two concurrent requests
    # cannot both start a deletion.
    marked = db.execute(
        update(Element)
        .where(Element.id == element_id, Element.deleting.is_(False))
        .values(deleting=True)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != 1:
        raise Conflict(f"{element.kind} {element.name!r} is already being deleted")
    subtree = select(ElementAncestor.element_id).where(ElementAncestor.ancestor_id == element_id)
    db.execute(
        update(Element)
        .where(Element.id.in_(subtree))
        .values(deleting=True)
        .execution_options(synchronize_session=False)
    )
    job = create_job(db, DELETE_JOB, actor, element)
    db.flush()
    return job


def _run_deletion(context: JobContext) -> None:
    # One transaction: the subtree's bytes are queued for removal from their storages
    # (storage.cleanup.empty_trash), then one statement deletes the subtree — children, closure
    # rows, stored-file records and permission sets go by ON DELETE CASCADE. A crash leaves
    # either the whole subtree or nothing, and never bytes that nothing refers to.
    db, job = context.db, context.job
    if job.element_id is not None:
        subtree = select(ElementAncestor.element_id).where(
            ElementAncestor.ancestor_id == job.element_id)
        db.execute(insert(StorageTrash).from_select(
            ["storage", "key", "queued_at"],
            select(StoredFile.storage, StoredFile.key,
                   literal(utcnow(), type_=StorageTrash.queued_at.type))
            .where(StoredFile.element_id.in_(subtree)),
        ))
        # The files of acquisition runs in the subtree (their rows go by ON DELETE CASCADE).
        db.execute(insert(StorageTrash).from_select(
            ["storage", "key", "queued_at"],
            select(RunFile.storage, RunFile.key,
                   literal(utcnow(), type_=StorageTrash.queued_at.type))
            .where(RunFile.dataset_id.in_(subtree)),
        ))
        db.execute(delete(Element).where(Element.id == job.element_id))


register_handler(DELETE_JOB, _run_deletion)
