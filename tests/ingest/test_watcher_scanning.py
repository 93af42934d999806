"""Incremental folder scans: what is found, what is skipped, which folders are listed again."""

from __future__ import annotations

import os
import time

import pytest

from cryovault.ingest.watcher import scanning
from cryovault.ingest.watcher.scanning import SourceRoot, TreeScanner, is_ignored_name


def _age(path, seconds=10.0) -> None:
    """Pretend the folder changed a while ago (a listing of it can be trusted)."""
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.mark.parametrize("name", [".hidden", "~temp.xml", "a.xml~", "b.tmp", "c.PART",
                                  "d.partial", "e.swp", "f.crdownload", "Thumbs.db",
                                  "desktop.ini"])
def test_temporary_and_hidden_names_are_ignored(name):
    assert is_ignored_name(name)


@pytest.mark.parametrize("name", ["EpuSession.dm", "Atlas_1.jpg", "x_fractions.tiff",
                                  "Position_1.mdoc", "a.temperature.xml"])
def test_instrument_names_are_kept(name):
    assert not is_ignored_name(name)


def test_new_and_removed_files_and_prefix(tmp_path):
    (tmp_path / "Sample7" / "Atlas").mkdir(parents=True)
    (tmp_path / "Sample7" / "Atlas" / "Atlas.dm").write_text("a")
    (tmp_path / "top.dm").write_text("t")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.dm").write_text("h")
    scanner = TreeScanner(SourceRoot(tmp_path, "Atlas/"))
    first = scanner.scan()
    assert sorted(f.relative_path for f in first.added) == ["Atlas/Sample7/Atlas/Atlas.dm",
                                                            "Atlas/top.dm"]
    assert {f.path for f in first.added} == {tmp_path / "Sample7" / "Atlas" / "Atlas.dm",
                                             tmp_path / "top.dm"}
    assert scanner.scan().added == []
    (tmp_path / "top.dm").unlink()
    (tmp_path / "Sample7" / "Atlas" / "Atlas_2.jpg").write_text("j")
    second = scanner.scan()
    assert [f.relative_path for f in second.added] == ["Atlas/Sample7/Atlas/Atlas_2.jpg"]
    assert second.removed == ["Atlas/top.dm"]
    for path in (tmp_path / "Sample7" / "Atlas").iterdir():
        path.unlink()
    (tmp_path / "Sample7" / "Atlas").rmdir()
    assert sorted(scanner.scan().removed) == ["Atlas/Sample7/Atlas/Atlas.dm",
                                              "Atlas/Sample7/Atlas/Atlas_2.jpg"]


def test_the_accept_filter_sees_the_path_inside_the_root(tmp_path):
    (tmp_path / "Sample3").mkdir()
    (tmp_path / "Sample7").mkdir()
    (tmp_path / "Sample3" / "a.dm").write_text("3")
    (tmp_path / "Sample7" / "a.dm").write_text("7")
    scanner = TreeScanner(SourceRoot(tmp_path, "Atlas/",
                                     accept=lambda inner: inner.startswith("Sample7/")))
    assert [f.relative_path for f in scanner.scan().added] == ["Atlas/Sample7/a.dm"]


def test_symbolic_links_never_lead_out_of_the_root(tmp_path, caplog):
    root = tmp_path / "session"
    (root / "Data").mkdir(parents=True)
    (root / "Data" / "real.xml").write_text("r")
    (tmp_path / "outside.xml").write_text("o")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "outside.xml", root / "out.xml")
    os.symlink(root / "Data" / "real.xml", root / "inside.xml")
    os.symlink(tmp_path / "elsewhere", root / "linked-folder")
    os.symlink(root, root / "Data" / "loop")
    found = sorted(f.relative_path for f in TreeScanner(SourceRoot(root)).scan().added)
    assert found == ["Data/real.xml", "inside.xml"]
    assert "symbolic link out of the watched folder" in caplog.text
    assert "symbolic link to a folder, not followed" in caplog.text


def test_unchanged_folders_are_not_listed_again(tmp_path, monkeypatch):
    for square in range(5):
        folder = tmp_path / f"GridSquare_{square}" / "Data"
        folder.mkdir(parents=True)
        (folder / "a.xml").write_text("x")
        _age(folder)
        _age(folder.parent)
    _age(tmp_path)
    listed: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path):
        listed.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(scanning.os, "scandir", counting_scandir)
    scanner = TreeScanner(SourceRoot(tmp_path))
    assert len(scanner.scan().added) == 5
    assert len(listed) == 11  # the root, 5 squares, 5 Data folders
    listed.clear()
    assert scanner.scan().added == []
    assert listed == []  # nothing changed: no folder listed
    (tmp_path / "GridSquare_3" / "Data" / "b.xml").write_text("y")
    added = scanner.scan().added
    assert [f.relative_path for f in added] == ["GridSquare_3/Data/b.xml"]
    assert listed == [str(tmp_path / "GridSquare_3" / "Data")]


def test_a_folder_changed_just_before_its_listing_is_listed_again(tmp_path, monkeypatch):
    (tmp_path / "a.xml").write_text("x")  # the root changed just now
    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(scanning.os, "scandir",
                        lambda path: listed.append(str(path)) or real_scandir(path))
    scanner = TreeScanner(SourceRoot(tmp_path))
    scanner.scan()
    scanner.scan()
    assert listed == [str(tmp_path), str(tmp_path)]  # a file of the same tick could be missed
    _age(tmp_path)
    scanner.scan()
    listed.clear()
    scanner.scan()
    assert listed == []


def test_forget_makes_a_file_found_again(tmp_path):
    (tmp_path / "a.xml").write_text("x")
    _age(tmp_path)
    scanner = TreeScanner(SourceRoot(tmp_path))
    assert len(scanner.scan().added) == 1
    scanner.forget("a.xml")
    assert [f.relative_path for f in scanner.scan().added] == ["a.xml"]
