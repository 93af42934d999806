"""What can be created where, for the portal's "+ Add element" dialog (WS-1, WS-2, WS-4)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cryovault.db.elements import Element
from cryovault.preferences import max_folder_depth
from cryovault.workspace.rules import CHILD_KINDS
from cryovault.workspace.templates import allowed_dataset_types, get_template, templates

DATASET_LABELS = {"free": "Free", "epu_run": "EPU run", "tomo_run": "Tomo run",
                  "lp_run": "Live-processing run"}


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class CreateOptions:
    kinds: list[str]
    workflow_types: list[Choice]
    dataset_types: list[Choice]


def create_options(db: Session, parent: Element | None) -> CreateOptions:
    """Kinds the portal offers inside `parent`. Files come in by upload, never by this dialog;
    samples are registered on the Samples page."""
    kinds = [k for k in CHILD_KINDS[parent.kind if parent else None] if k not in ("file", "sample")]
    if "folder" in kinds:
        depth = parent.depth + 1 if parent else 0
        if depth > max_folder_depth(db):
            kinds.remove("folder")
    dataset_types: list[Choice] = []
    workflow_type = parent.workflow_type if parent is not None else None
    if parent is not None and parent.kind == "workflow" and not get_template(
        workflow_type or "free"
    ).user_steps:
        kinds.remove("step")
    if parent is not None and parent.kind == "step":
        workflow = db.get(Element, parent.parent_id)
        allowed = allowed_dataset_types(workflow.workflow_type or "free" if workflow else "free",
                                        parent.name)
        # Platform-filled datasets are made by the ingest, not by hand; EPU and Tomo runs
        # may still be declared here so that an instrument can push into them.
        dataset_types = [Choice(t, DATASET_LABELS[t]) for t in allowed if t != "lp_run"]
    workflow_types = [Choice(t.type, t.label) for t in templates()] if "workflow" in kinds else []
    return CreateOptions(kinds, workflow_types, dataset_types)
