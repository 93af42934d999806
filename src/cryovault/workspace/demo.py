"""The demo instance of `cryovault demo`: a small tree that shows every workflow template."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.db.elements import Element
from cryovault.workspace.elements import create_element, list_children


def build_demo_tree(db: Session, actor: Actor) -> bool:
    """Create the demo tree unless the workspace already holds elements; True if created."""
    if db.scalar(select(Element.id).limit(1)) is not None:
        return False
    facility = create_element(db, actor, kind="folder", name="Demo facility",
                              description="Example projects created by `cryovault demo`.")
    project = create_element(db, actor, kind="folder", name="Apoferritin",
                             parent_id=facility.id)
    spa = create_element(db, actor, kind="workflow", name="Apoferritin SPA",
                         parent_id=project.id, workflow_type="spa_qm",
                         description="Single-particle session with the quality monitor.")
    steps = {v.element.name: v for v in list_children(db, actor, spa.id).items}
    create_element(db, actor, kind="dataset", name="Grid 1 screening",
                   parent_id=steps["Screening"].id, dataset_type="free")
    create_element(db, actor, kind="dataset", name="Grid 1 EPU run",
                   parent_id=steps["Imaging"].id, dataset_type="epu_run")
    tomo = create_element(db, actor, kind="workflow", name="Lamella tomography",
                          parent_id=facility.id, workflow_type="et")
    tomo_steps = {v.element.name: v for v in list_children(db, actor, tomo.id).items}
    create_element(db, actor, kind="dataset", name="Lamella 3 tilt series",
                   parent_id=tomo_steps["Imaging"].id, dataset_type="tomo_run")
    free = create_element(db, actor, kind="workflow", name="Notebook", workflow_type="free")
    create_element(db, actor, kind="step", name="Sample preparation", parent_id=free.id)
    return True


def demo_runs(db: Session) -> list[tuple[str, str]]:
    """(kind, dataset id) of the demo tree's EPU run ("epu") and Tomo run ("tomo"), which the
    simulated instruments fill."""
    runs = []
    for kind, dataset_type, name in (("epu", "epu_run", "Grid 1 EPU run"),
                                     ("tomo", "tomo_run", "Lamella 3 tilt series")):
        found = db.scalar(select(Element.id).where(Element.kind == "dataset",
                                                   Element.dataset_type == dataset_type,
                                                   Element.name == name,
                                                   Element.deleting.is_(False)).limit(1))
        if found is not None:
            runs.append((kind, str(found)))
    return runs
