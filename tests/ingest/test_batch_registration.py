"""Batches registered in one transaction (issue #9: registration rate): item rows read and
created for the whole batch, metadata parsed and copies made before the transaction, fsyncs
issued together, races with other registrations of the same run, fallbacks."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy.exc import IntegrityError

from cryovault.db.runs import Micrograph, RunFile, RunFileTombstone
from cryovault.errors import Conflict
from cryovault.ingest import batch_registry
from cryovault.ingest.batch_framing import parse_batch
from cryovault.ingest.grouped_fsync import commit_together
from cryovault.ingest.rows import ensure_rows
from cryovault.storage.backends import LocalStorage
from tests.ingest.test_registry_api import (
    ACQUISITION,
    EPU,
    FIXTURES,
    SQUARE,
    batch,
    epu_run,
    frame,
    listed,
    micrographs,
    power_cut_on_second_interpretation,
    small_mrc,
)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")
XML = EPU / SQUARE / "Data" / f"{ACQUISITION}.xml"


def acquisition_files(number: int, mrc: bytes) -> list[tuple[str, bytes]]:
    """An acquisition's XML, integrated image and movie (in EPU's folder layout)."""
    name = f"FoilHole_{9015800 + number}_Data_9017347_6_20250108_1549{number:02d}"
    data = f"{SQUARE}/Data/{name}"
    return [(f"{data}.xml", XML.read_bytes()), (f"{data}.mrc", mrc),
            (f"{data}_fractions.tiff", b"II*\x00" + bytes([number]) * 8)]


def stored_keys(app) -> set[str]:
    root = app.state.storages.primary.root
    return {str(p.relative_to(root)) for p in (root / "runs").rglob("*") if p.is_file()}


def row_keys(app) -> set[str]:
    with app.state.sessions() as db:
        return {row.key for row in db.query(RunFile)}


def test_concurrent_batches_share_the_acquisitions_they_split(alice, app, tmp_path):
    """The files of each acquisition come in different batches sent at the same time: one
    micrograph per acquisition, completed, with its downscaled copy; every file once."""
    run = epu_run(alice)
    mrc = small_mrc(tmp_path)
    files = [f for number in range(12) for f in acquisition_files(number, mrc)]
    # batch k takes every 4th file: the three files of an acquisition land in three batches
    bodies = [frame(*files[k::4]) for k in range(4)]
    answers: list = [None] * len(bodies)

    def send(k: int) -> None:
        answers[k] = batch(alice, run["id"], bodies[k])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    results = [r for answer in answers for r in answer.json()["results"]]
    assert all(answer.status_code == 200 for answer in answers)
    assert sorted(r["status"] for r in results) == ["registered"] * len(files)
    page = micrographs(alice, run["id"], limit=100)
    assert page["total"] == 12 and page["counts"]["completed"] == 12
    names = listed(alice, run["id"])
    assert set(names) == {path for path, _ in files}  # copies are not listed
    with app.state.sessions() as db:
        copies = db.query(RunFile).filter_by(role="downscaled").all()
        assert len(copies) == 12
        assert {c.relative_path for c in copies} == {
            f".cryovault/downscaled/{path}.png" for path, _ in files if path.endswith(".mrc")}
        by_id = {m.id: m for m in db.query(Micrograph)}
        assert all(c.item_id in by_id for c in copies)
    assert stored_keys(app) == row_keys(app)


def test_a_batch_answers_files_already_there_without_storing_them(alice, app, tmp_path,
                                                                  monkeypatch):
    run = epu_run(alice)
    files = acquisition_files(1, small_mrc(tmp_path))
    assert batch(alice, run["id"], frame(*files)).status_code == 200
    written: list[str] = []
    real = batch_registry._store

    def spy(storage, items, **kwargs):
        written.extend(target.relative_path for _, target, _, _ in items)
        return real(storage, items, **kwargs)

    monkeypatch.setattr(batch_registry, "_store", spy)
    again = batch(alice, run["id"], frame(*files, ("EpuSession.dm", b"<x/>")))
    assert [r["status"] for r in again.json()["results"]] == [
        "already_registered"] * 3 + ["registered"]
    assert written == ["EpuSession.dm"]
    assert stored_keys(app) == row_keys(app)


def test_cleaned_files_are_not_registered_again_by_a_batch(alice, app):
    run = epu_run(alice)
    path = f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff"
    removed = uuid.uuid4()
    with app.state.sessions() as db:
        db.add(RunFileTombstone(id=removed, dataset_id=uuid.UUID(run["id"]),
                                relative_path=path, session="s", source_size=8,
                                source_mtime=1000.0))
        db.commit()
    same = batch(alice, run["id"], frame((path, b"II*\x00abcd")), session="s")
    assert same.json()["results"][0]["status"] == "already_registered"
    assert same.json()["results"][0]["file_id"] == str(removed)
    assert listed(alice, run["id"]) == {} and stored_keys(app) == set()
    newer = batch(alice, run["id"], frame((path, b"II*\x00abcd", 2000.0)), session="s")
    assert newer.json()["results"][0]["status"] == "registered"


def test_the_transaction_runs_again_after_a_race(alice, app, tmp_path, monkeypatch):
    """A unique key taken meanwhile by another registration (or a deadlock): the batch's
    transaction is rolled back and runs again; nothing is registered twice."""
    run = epu_run(alice)
    real = batch_registry._record_together
    calls = []

    def races_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # its writes are rolled back
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_registry, "_record_together", races_once)
    files = acquisition_files(2, small_mrc(tmp_path))
    results = batch(alice, run["id"], frame(*files)).json()["results"]
    assert [r["status"] for r in results] == ["registered"] * 3 and len(calls) == 2
    assert micrographs(alice, run["id"])["counts"]["completed"] == 1
    with app.state.sessions() as db:
        assert db.query(RunFile).count() == 4  # three files and one copy
    assert stored_keys(app) == row_keys(app)


def test_a_file_failing_the_transaction_sends_the_batch_file_by_file(alice, app, tmp_path,
                                                                     monkeypatch):
    run = epu_run(alice)
    real = batch_registry.interpret

    def refuses_in_a_batch(db, storages, dataset_type, run_file, prepared=None, lookups=None):
        if lookups is not None and run_file.relative_path.endswith(".xml"):
            raise Conflict("not in a batch")
        return real(db, storages, dataset_type, run_file, prepared, lookups)

    monkeypatch.setattr(batch_registry, "interpret", refuses_in_a_batch)
    files = acquisition_files(3, small_mrc(tmp_path))
    results = batch(alice, run["id"], frame(*files)).json()["results"]
    assert [r["status"] for r in results] == ["registered"] * 3
    assert micrographs(alice, run["id"])["counts"]["completed"] == 1
    # the copy made before the transaction is not kept: the file-by-file path made its own
    assert stored_keys(app) == row_keys(app) and len(row_keys(app)) == 4


def test_commit_together_is_all_or_nothing(tmp_path, monkeypatch):
    storage = LocalStorage("local", "primary", tmp_path / "store")
    staged = []
    for number in range(6):
        write = storage.stage()
        write.write(b"x" * 100)
        staged.append((write, f"runs/aa/run/{number}-file"))
    failing = staged[3][0]

    def broken(key, *, sync_directory=True):
        raise OSError("disk full")

    monkeypatch.setattr(failing, "commit", broken)
    with pytest.raises(OSError, match="disk full"):
        commit_together(storage, staged)
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
    staged = []
    for number in range(6):
        write = storage.stage()
        write.write(bytes([number]) * 10)
        staged.append((write, f"runs/aa/run/{number}-file"))
    commit_together(storage, staged)
    for number in range(6):
        assert storage.path_of(f"runs/aa/run/{number}-file").read_bytes() == bytes([number]) * 10
    assert [p for p in (tmp_path / "store" / "tmp").rglob("*") if p.is_file()] == []


def test_ensure_rows_reads_creates_and_waits_for_a_concurrent_creator(alice, app):
    run_id = uuid.UUID(epu_run(alice)["id"])
    defaults = {"status": "in_progress", "metadata_json": "{}"}
    sessions = app.state.sessions
    first = sessions()
    created = ensure_rows(first, Micrograph, ("dataset_id", run_id), "name",
                          {"a": defaults, "b": defaults})
    assert sorted(created) == ["a", "b"]
    other: dict = {}

    def concurrently() -> None:
        with sessions() as db:  # waits for the first transaction's rows (a unique key)
            rows = ensure_rows(db, Micrograph, ("dataset_id", run_id), "name",
                               {"b": defaults, "c": defaults})
            other.update({name: row.id for name, row in rows.items()})
            db.commit()

    thread = threading.Thread(target=concurrently)
    thread.start()
    time.sleep(0.3)
    first.commit()
    thread.join(60)
    first.close()
    assert other["b"] == created["b"].id and set(other) == {"b", "c"}
    with sessions() as db:
        again = ensure_rows(db, Micrograph, ("dataset_id", run_id), "name",
                            {"a": defaults, "b": defaults, "c": defaults})
        assert {name: row.id for name, row in again.items() if name != "a"} == other
        assert db.query(Micrograph).count() == 3


def test_unreadable_images_and_broken_xml_in_a_batch(alice, app):
    """Problems found before the transaction are recorded on the files and items as when the
    files come one by one."""
    run = epu_run(alice)
    data = f"{SQUARE}/Data/FoilHole_7_Data_8_9_20250108_154915"
    results = batch(alice, run["id"], frame((f"{data}.xml", b"<not xml"),
                                            (f"{data}.mrc", b"not an image"))).json()["results"]
    assert [r["status"] for r in results] == ["registered", "registered"]
    assert results[0]["problem"] and results[0]["item"]["status"] == "failed"
    assert results[1]["problem"]
    assert micrographs(alice, run["id"])["counts"]["failed"] == 1
    assert stored_keys(app) == row_keys(app) and len(row_keys(app)) == 2



def test_a_crash_in_a_batch_undoes_the_rows_its_savepoints_created(alice, app, monkeypatch):
    """The session row that the first file creates (in a savepoint) goes with the crash of
    the second: the batch is one transaction, savepoints included."""
    from cryovault.db.runs import RunSession

    run = epu_run(alice)
    power_cut_on_second_interpretation(monkeypatch)
    body = frame(("EpuSession.dm", (EPU / "EpuSession.dm").read_bytes()),
                 (f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff", b"II*\x00abcd"))
    with app.state.sessions() as db:
        target = batch_registry.open_batch(db, alice.actor, uuid.UUID(run["id"]), "s")
        with pytest.raises(RuntimeError):
            batch_registry.register_batch(db, app.state.storages, target, parse_batch(body))
    with app.state.sessions() as db:
        assert db.query(RunSession).count() == 0
        assert db.query(Micrograph).count() == 0 and db.query(RunFile).count() == 0
    assert stored_keys(app) == set()


def test_micrographs_of_a_batch_are_listed_in_the_order_their_files_came(alice):
    run = epu_run(alice)
    names = [f"FoilHole_{hole}_Data_9017347_6_20250108_15491{second}"
             for hole, second in ((9, 0), (1, 1), (5, 2), (3, 3))]
    body = frame(*[(f"{SQUARE}/Data/{name}_fractions.tiff", b"II*\x00" + name.encode())
                   for name in names])
    assert batch(alice, run["id"], body).status_code == 200
    page = micrographs(alice, run["id"], limit=10)
    assert [item["name"] for item in page["items"]] == names
