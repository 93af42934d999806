"""Cleanup of an acquisition run (SPEC JOB-6, SPA-3, ET-5): rules by dataset type, each
removing the run files of some roles; running them is a job.

EPU run: movies, integrated images and, in a workflow with the quality monitor (spa_qm, spa_lp),
processed images (motion-corrected sums, CTF diagnostics). Tomo run: raw movies, raw metadata
(.mdoc) and processed data (motion-corrected tilts, aligned stacks, reconstructions). Free
datasets have no rules (their files are deleted one by one).

Items stay: a micrograph whose movie was removed stays completed, its metadata recording
`"cleaned": ["movie"]`. Downscaled copies (SPA-8) are never removed, so images stay viewable.
Files go in batches; each batch queues its bytes for removal and deletes its rows in one
transaction, so a crash leaves each file either registered with its bytes or gone.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import OWNER
from cryovault.db.base import utcnow
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.files import StorageTrash
from cryovault.db.jobs import Job
from cryovault.db.runs import RunFile, RunFileTombstone
from cryovault.errors import Conflict, Invalid
from cryovault.jobs.records import PENDING, create_job, job_parameters
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.lifecycle.run_files import (
    BATCH_FILES,
    DOWNSCALED_ROLE,
    RunFileSelection,
    item_model,
    run_file_totals,
)

CLEANUP_JOB = "cleanup"
QUALITY_MONITOR_WORKFLOWS = ("spa_qm", "spa_lp")
DATASET_LABELS = {"epu_run": "EPU run", "tomo_run": "Tomo run"}


@dataclass(frozen=True)
class CleanupRule:
    name: str
    label: str
    description: str
    roles: frozenset[str]


MOVIES = CleanupRule(
    "movies", "Movies",
    "The movies of every acquisition (fractions TIFF/MRC or EER). Micrographs, their metadata, "
    "integrated images and downscaled copies stay.", frozenset({"movie"}))
INTEGRATED_IMAGES = CleanupRule(
    "integrated_images", "Integrated images",
    "The integrated (summed) image of every acquisition. The downscaled copies stay, so the "
    "micrographs remain viewable.", frozenset({"integrated"}))
PROCESSED_IMAGES = CleanupRule(
    "processed_images", "Processed images",
    "The quality monitor's motion-corrected sums and CTF diagnostics. Their figures (drift, "
    "defocus, resolution) stay in the micrographs' metadata.",
    frozenset({"motion_corrected", "ctf_diagnostic"}))
RAW_MOVIES = CleanupRule(
    "raw_movies", "Raw movies",
    "The movie of every tilt (fractions TIFF/MRC or EER). Tilt series and their metadata stay.",
    frozenset({"tilt_movie"}))
RAW_METADATA = CleanupRule(
    "raw_metadata", "Raw metadata",
    "The SerialEM .mdoc files. The tilt angles, doses and times read from them stay in the "
    "tilt series' metadata.", frozenset({"mdoc"}))
PROCESSED_TOMO = CleanupRule(
    "processed", "Processed data",
    "Motion-corrected tilts, aligned stacks and reconstructions made by the tomography "
    "pipeline.", frozenset({"motion_corrected", "aligned_stack", "reconstruction"}))


def workflow_type_of(db: Session, element: Element) -> str | None:
    """The type of the workflow an element belongs to (None outside a workflow)."""
    return db.scalar(
        select(Element.workflow_type)
        .join(ElementAncestor, ElementAncestor.ancestor_id == Element.id)
        .where(ElementAncestor.element_id == element.id, Element.kind == "workflow")
        .limit(1))


def rules_for(db: Session, dataset: Element) -> list[CleanupRule]:
    """The cleanup rules of a dataset's type (empty: no cleanup applies)."""
    if dataset.kind != "dataset":
        return []
    if dataset.dataset_type == "epu_run":
        rules = [MOVIES, INTEGRATED_IMAGES]
        if workflow_type_of(db, dataset) in QUALITY_MONITOR_WORKFLOWS:
            rules.append(PROCESSED_IMAGES)
        return rules
    if dataset.dataset_type == "tomo_run":
        return [RAW_MOVIES, RAW_METADATA, PROCESSED_TOMO]
    return []


def _describe(element: Element) -> str:
    if element.kind != "dataset":
        return f"{element.kind} {element.name!r}"
    kind = DATASET_LABELS.get(element.dataset_type or "", f"{element.dataset_type or 'free'} "
                                                            "dataset")
    return f"{kind} {element.name!r}"


def cleanup_target(db: Session, actor: Actor, dataset_id: uuid.UUID, minimum: int,
                   action: str) -> tuple[Element, list[CleanupRule]]:
    """The dataset and its rules, for an actor with at least `minimum` access; Invalid when
    no cleanup applies to it."""
    element, _ = require_access(db, actor, dataset_id, minimum, action)
    rules = rules_for(db, element)
    if not rules:
        raise Invalid(f"cleanup rules exist for EPU runs and Tomo runs only; {_describe(element)} "
                      "has none (delete its files or the element itself instead)")
    return element, rules


def resolve_rules(dataset: Element, rules: list[CleanupRule],
                  names: list[str]) -> list[CleanupRule]:
    """The chosen rules by name, each of which must apply to the dataset's type."""
    if not names:
        raise Invalid("choose at least one cleanup rule: "
                      + ", ".join(rule.name for rule in rules))
    by_name = {rule.name: rule for rule in rules}
    chosen: list[CleanupRule] = []
    for name in dict.fromkeys(names):
        rule = by_name.get(name)
        if rule is None:
            raise Invalid(f"the cleanup rule {name!r} does not apply to {_describe(dataset)}; "
                          f"its rules are: {', '.join(by_name)}")
        chosen.append(rule)
    return chosen


def roles_of(rules: list[CleanupRule]) -> frozenset[str]:
    """The roles the rules remove; downscaled copies never are."""
    return frozenset().union(*(rule.roles for rule in rules)) - {DOWNSCALED_ROLE}


def pending_job(db: Session, element_id: uuid.UUID, kind: str) -> Job | None:
    return db.scalar(select(Job).where(Job.element_id == element_id, Job.kind == kind,
                                       Job.status.in_(PENDING))
                     .order_by(Job.created_at.desc()).limit(1))


def request_cleanup(db: Session, actor: Actor, dataset_id: uuid.UUID,
                    rule_names: list[str]) -> Job:
    """Register the cleanup of a run (owners only: it deletes data, as WS-6 deletion does)."""
    dataset, rules = cleanup_target(db, actor, dataset_id, OWNER, "run a cleanup on")
    chosen = resolve_rules(dataset, rules, rule_names)
    if pending_job(db, dataset.id, CLEANUP_JOB) is not None:
        raise Conflict(f"{_describe(dataset)} is already being cleaned up; wait for that job to "
                       "end")
    return create_job(db, CLEANUP_JOB, actor, dataset, {"rules": [r.name for r in chosen]})


def _mark_items_cleaned(db: Session, dataset: Element,
                        roles_by_item: dict[uuid.UUID, set[str]]) -> None:
    """Record on each item which of its files were cleaned up; its status stays."""
    if not roles_by_item:
        return
    model = item_model(dataset.dataset_type)
    now = utcnow()
    for item in db.scalars(select(model).where(model.id.in_(list(roles_by_item)))
                           .execution_options(populate_existing=True)):
        values = json.loads(item.metadata_json or "{}")
        values["cleaned"] = sorted(set(values.get("cleaned") or ()) | roles_by_item[item.id])
        item.metadata_json = json.dumps(values, sort_keys=True, default=str)
        item.updated_at = now


def _run_cleanup(context: JobContext) -> None:
    db, job = context.db, context.job
    dataset = db.get(Element, job.element_id) if job.element_id else None
    if dataset is None or dataset.deleting:
        raise Invalid("the run no longer exists or is being deleted; nothing was cleaned up")
    chosen = resolve_rules(dataset, rules_for(db, dataset), job_parameters(job).get("rules", []))
    roles = roles_of(chosen)
    selection = RunFileSelection(roles=roles, exclude_roles=frozenset({DOWNSCALED_ROLE}))
    total = run_file_totals(db, dataset.id, selection)
    removed_files = removed_bytes = 0
    while True:
        rows = db.execute(
            select(RunFile.id, RunFile.storage, RunFile.key, RunFile.size_bytes,
                   RunFile.item_id, RunFile.role, RunFile.relative_path, RunFile.session,
                   RunFile.source_size, RunFile.source_mtime)
            .where(RunFile.dataset_id == dataset.id, selection.clause())
            .order_by(RunFile.id).limit(BATCH_FILES)).all()
        if not rows:
            break
        now = utcnow()
        # One transaction per batch (committed by the checkpoint): the bytes are queued for
        # removal and the rows go together.
        db.add_all([StorageTrash(storage=row.storage, key=row.key, queued_at=now)
                    for row in rows])
        db.execute(delete(RunFile).where(RunFile.id.in_([row.id for row in rows]))
                   .execution_options(synchronize_session=False))
        # A watcher restarted without its state must not bring the cleaned files back.
        db.execute(delete(RunFileTombstone).where(
            RunFileTombstone.dataset_id == dataset.id,
            RunFileTombstone.relative_path.in_([row.relative_path for row in rows])))
        db.add_all([RunFileTombstone(id=row.id, dataset_id=dataset.id,
                                     relative_path=row.relative_path, session=row.session,
                                     source_size=row.source_size,
                                     source_mtime=row.source_mtime, removed_at=now)
                    for row in rows])
        roles_by_item: dict[uuid.UUID, set[str]] = defaultdict(set)
        for row in rows:
            if row.item_id is not None:
                roles_by_item[row.item_id].add(row.role)
        _mark_items_cleaned(db, dataset, roles_by_item)
        removed_files += len(rows)
        removed_bytes += sum(row.size_bytes for row in rows)
        context.checkpoint(removed_bytes / total.size_bytes if total.size_bytes else None,
                           _summary(removed_files, removed_bytes, chosen))
        _empty_trash(context)
    context.checkpoint(1.0, _summary(removed_files, removed_bytes, chosen))


def _summary(files: int, size_bytes: int, rules: list[CleanupRule]) -> str:
    what = ", ".join(rule.label.lower() for rule in rules)
    return f"{files:,} files ({size_bytes:,} bytes) removed: {what}"


def _empty_trash(context: JobContext) -> None:
    from cryovault.storage.cleanup import empty_trash

    if context.storages is not None:
        empty_trash(context.env.sessions, context.storages)


def finished_cleanups_after(db: Session, element_id: uuid.UUID, moment) -> bool:
    """Whether a cleanup of the element ended after `moment` (sizes computed before are out of
    date)."""
    return bool(db.scalar(select(func.count()).select_from(Job).where(
        Job.element_id == element_id, Job.kind == CLEANUP_JOB, Job.finished_at > moment)))


register_handler(CLEANUP_JOB, _run_cleanup)
