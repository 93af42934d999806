"""The command line: demo set-up, db upgrade, admin create-user with its error messages."""

from typer.testing import CliRunner

from cryovault.cli import app

runner = CliRunner()


def test_demo_setup_creates_admin_and_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("CRYOVAULT_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "sign in as 'admin' with password" in result.output
    assert "created the demo tree" in result.output
    assert (tmp_path / "cryovault.db").exists()
    # A second run keeps the tree and prints a new password that works.
    again = runner.invoke(app, ["demo", "--data-dir", str(tmp_path), "--no-serve"])
    assert again.exit_code == 0
    assert "created the demo tree" not in again.output

    from fastapi.testclient import TestClient

    from cryovault.settings import Settings
    from cryovault.web.app import create_app

    password = again.output.split("with password '")[1].split("'")[0]
    with TestClient(create_app(Settings(data_dir=tmp_path), resume_jobs=False)) as client:
        login = client.post("/api/v1/auth/login",
                            json={"username": "admin", "password": password})
        assert login.status_code == 200
        names = [e["name"] for e in client.get("/api/v1/elements").json()["items"]]
        assert names == ["Demo facility", "Notebook"]


def test_create_user_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("CRYOVAULT_DATABASE_URL", raising=False)
    base = ["admin", "create-user"]
    ok = runner.invoke(app, [*base, "carol", "--password", "long-enough-1", "--role",
                             "workflow-admin", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "created user 'carol' (workflow-admin)" in ok.output
    twice = runner.invoke(app, [*base, "carol", "--password", "long-enough-1",
                                "--data-dir", str(tmp_path)])
    assert twice.exit_code == 2 and "already exists" in twice.output
    bad_role = runner.invoke(app, [*base, "dave", "--password", "long-enough-1", "--role",
                                   "emperor", "--data-dir", str(tmp_path)])
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    short = runner.invoke(app, [*base, "erin", "--password", "short",
                                "--data-dir", str(tmp_path)])
    assert short.exit_code == 2 and "at least 8 characters" in short.output
    assert "Traceback" not in short.output


def test_db_upgrade(tmp_path, monkeypatch):
    monkeypatch.delenv("CRYOVAULT_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "Created the built-in admin" in result.output
    assert "up to date" in result.output


def test_storage_verify_and_cleanup(tmp_path, monkeypatch):
    """`storage verify` flags damaged files and fails; `storage cleanup` removes leftovers."""
    monkeypatch.delenv("CRYOVAULT_DATABASE_URL", raising=False)
    from fastapi.testclient import TestClient

    from cryovault.settings import Settings
    from cryovault.web.app import create_app
    from tests.conftest import add_user

    app_ = create_app(Settings(data_dir=tmp_path), resume_jobs=False)
    with TestClient(app_) as client:
        alice = add_user(app_.state.sessions, client, "alice")
        workflow = alice.create("workflow", "W", workflow_type="free")
        step = alice.create("step", "S", workflow["id"])
        files = [alice.post(f"/api/v1/elements/{step['id']}/files", params={"name": name},
                            content=name.encode() * 100).json() for name in ("a.txt", "b.txt")]
    app_.state.engine.dispose()
    ok = runner.invoke(app, ["storage", "verify", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0 and "every registered file matches" in ok.output, ok.output

    storage = tmp_path / "storage" / "primary"
    damaged = next(storage.glob(f"files/*/{files[1]['id']}/*"))
    damaged.write_bytes(b"x" * damaged.stat().st_size)
    bad = runner.invoke(app, ["storage", "verify", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2, bad.output
    assert "mismatch" in bad.output and "1 damaged or missing files were flagged" in bad.output

    leftover = storage / "tmp" / "crashed.part"
    leftover.write_bytes(b"half")
    kept = runner.invoke(app, ["storage", "cleanup", "--data-dir", str(tmp_path)])
    assert kept.exit_code == 0 and leftover.exists()  # within the grace period
    done = runner.invoke(app, ["storage", "cleanup", "--grace-minutes", "0", "--data-dir",
                               str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "1 staged leftovers" in done.output and not leftover.exists()
    assert damaged.exists()  # registered files are never cleaned up
