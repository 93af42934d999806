"""Concurrent renames and deletions never leave a half-deleted subtree (issue: core platform)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from cryovault.access.actor import Actor
from cryovault.access.users import create_user
from cryovault.db.elements import Acl, Element, ElementAncestor
from cryovault.errors import Conflict, NotFound
from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.workspace import deletion
from cryovault.workspace.elements import create_element, update_element


def _tree(sessions) -> tuple[Actor, list]:
    with sessions() as db:
        actor = Actor.of(create_user(db, "owner", "password-123"))
        folder = create_element(db, actor, kind="folder", name="F")
        workflows = []
        for i in range(4):
            wf = create_element(db, actor, kind="workflow", name=f"W{i}", parent_id=folder.id,
                                workflow_type="spa")
            workflows.append(wf.id)
        db.commit()
        return actor, [folder.id, *workflows]


def _consistent(db) -> None:
    """No orphans: every parent, closure row and permission set points at a live element."""
    ids = set(db.scalars(select(Element.id)))
    parents = set(db.scalars(select(Element.parent_id).where(Element.parent_id.is_not(None))))
    assert parents <= ids
    closure = db.execute(select(ElementAncestor.element_id, ElementAncestor.ancestor_id)).all()
    assert all(e in ids and a in ids for e, a in closure)
    assert set(db.scalars(select(Acl.element_id))) <= ids
    acl_ids = set(db.scalars(select(Acl.id)))
    assert set(db.scalars(select(Element.acl_id))) <= acl_ids
    # A subtree is either entirely marked for deletion or not at all below a live element.
    deleting = set(db.scalars(select(Element.id).where(Element.deleting.is_(True))))
    for element_id, ancestor_id in closure:
        if ancestor_id in deleting:
            assert element_id in deleting


def test_renames_racing_deletes(sessions):
    actor, (folder_id, *workflow_ids) = _tree(sessions)
    outcomes: list[str] = []
    lock = threading.Lock()

    def rename(element_id, n):
        for i in range(n):
            with sessions() as db:
                try:
                    update_element(db, actor, element_id, name=f"renamed {i}")
                    db.commit()
                    result = "renamed"
                except (Conflict, NotFound) as exc:
                    db.rollback()
                    result = type(exc).__name__
            with lock:
                outcomes.append(result)

    def delete(element_id):
        with sessions() as db:
            try:
                job = deletion.request_deletion(db, actor, element_id)
                db.commit()
            except (Conflict, NotFound):
                db.rollback()
                with lock:
                    outcomes.append("refused")
                return
        run_job(JobEnvironment(sessions), job.id)
        with lock:
            outcomes.append("deleted")

    threads = [threading.Thread(target=rename, args=(wid, 15)) for wid in workflow_ids]
    threads += [threading.Thread(target=delete, args=(folder_id,)) for _ in range(3)]
    threads += [threading.Thread(target=delete, args=(workflow_ids[0],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(not t.is_alive() for t in threads)

    assert outcomes.count("deleted") >= 1
    with sessions() as db:
        _consistent(db)
        assert db.get(Element, folder_id) is None
        assert db.scalar(select(func.count()).select_from(Element)) == 0
