"""Workflow templates (SPEC WS-2, WS-4): the steps a workflow type creates, and which dataset
types each step accepts. A registry: plugins add templates with `register_template`."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryovault.errors import Invalid

DATASET_TYPES = ("free", "epu_run", "tomo_run", "lp_run")
# Dataset types filled by the platform (ingest or live processing); users cannot upload into them.
MANAGED_DATASET_TYPES = frozenset({"epu_run", "tomo_run", "lp_run"})


@dataclass(frozen=True)
class StepTemplate:
    name: str
    dataset_types: tuple[str, ...] = ("free",)


@dataclass(frozen=True)
class WorkflowTemplate:
    type: str
    label: str
    steps: tuple[StepTemplate, ...] = ()
    user_steps: bool = False  # whether users add their own steps (free workflows)
    user_step_dataset_types: tuple[str, ...] = ("free",)
    description: str = field(default="", compare=False)

    def step(self, name: str) -> StepTemplate | None:
        return next((s for s in self.steps if s.name == name), None)


_REGISTRY: dict[str, WorkflowTemplate] = {}


def register_template(template: WorkflowTemplate) -> None:
    for step in template.steps:
        for dataset_type in step.dataset_types:
            if dataset_type not in DATASET_TYPES:
                raise ValueError(f"unknown dataset type {dataset_type!r} in {template.type}")
    _REGISTRY[template.type] = template


def templates() -> list[WorkflowTemplate]:
    return list(_REGISTRY.values())


def get_template(workflow_type: str) -> WorkflowTemplate:
    try:
        return _REGISTRY[workflow_type]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise Invalid(f"unknown workflow type {workflow_type!r}: choose one of {known}") from None


def allowed_dataset_types(workflow_type: str, step_name: str) -> tuple[str, ...]:
    template = get_template(workflow_type)
    step = template.step(step_name)
    if step is not None:
        return step.dataset_types
    return template.user_step_dataset_types


_SPA_SCREENING = StepTemplate("Screening", ("free", "epu_run"))
_SPA_IMAGING = StepTemplate("Imaging", ("free", "epu_run"))

register_template(WorkflowTemplate(
    "free", "Free", user_steps=True, description="No predefined steps; add your own."))
register_template(WorkflowTemplate(
    "spa", "Single Particle Analysis",
    (_SPA_SCREENING, _SPA_IMAGING, StepTemplate("Processing")),
    description="Screening, Imaging and Processing of a single-particle project."))
register_template(WorkflowTemplate(
    "spa_qm", "SPA with quality monitor",
    (_SPA_SCREENING, _SPA_IMAGING, StepTemplate("Processing")),
    description="EPU runs get live motion correction and CTF estimation."))
register_template(WorkflowTemplate(
    "spa_lp", "SPA with live processing",
    (_SPA_SCREENING, _SPA_IMAGING, StepTemplate("Processing", ("free", "lp_run"))),
    description="EPU runs also feed live particle picking and 2D classification."))
register_template(WorkflowTemplate(
    "et", "Cryo-ET with live reconstruction",
    (StepTemplate("Vitrification"), StepTemplate("Milling"),
     StepTemplate("Imaging", ("free", "tomo_run")), StepTemplate("Processing")),
    description="Tomo runs in Imaging are aligned and reconstructed live."))
