"""The `cryovault` command: serve, demo, database and administration commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryovault.settings import Settings

app = typer.Typer(help="cryovault: data management for cryo-EM facilities.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
storage_app = typer.Typer(help="Storages: cleanup and integrity checks.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(storage_app, name="storage")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory "
                                              "(default: $CRYOVAULT_DATA_DIR or ./data)")]


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir else Settings()


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _sessions(settings: Settings):
    from cryovault.db.engine import make_engine, make_sessionmaker
    from cryovault.db.migrate import upgrade

    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    return make_sessionmaker(engine)


def _ensure_admin(sessions) -> None:
    from cryovault.access.users import BUILTIN_ADMIN, ensure_builtin_admin

    with sessions() as db:
        password = ensure_builtin_admin(db)
        db.commit()
    if password:
        typer.secho(f"Created the built-in admin: username {BUILTIN_ADMIN!r}, password "
                    f"{password!r} (change it with 'cryovault admin set-password')",
                    fg=typer.colors.GREEN)


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from cryovault.web.app import create_app

    typer.echo(f"cryovault portal on http://{host}:{port}  (API docs: /api/docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: DataDir = None) -> None:
    """Start the portal and the API."""
    settings = _settings(data_dir)
    _ensure_admin(_sessions(settings))
    _serve(settings, host, port)


@app.command()
def demo(host: str = "127.0.0.1", port: int = 8000,
         data_dir: Annotated[Path, typer.Option("--data-dir")] = Path("demo-data"),
         no_serve: Annotated[bool, typer.Option("--no-serve", help="set up only")] = False
         ) -> None:
    """Set up a demo instance (admin account, example tree) and serve it."""
    from cryovault.access.actor import Actor
    from cryovault.access.users import (
        BUILTIN_ADMIN,
        ensure_builtin_admin,
        find_by_login,
        set_password,
    )
    from cryovault.workspace.demo import build_demo_tree

    settings = Settings(data_dir=data_dir)
    sessions = _sessions(settings)
    with sessions() as db:
        created = ensure_builtin_admin(db)
        admin = find_by_login(db, BUILTIN_ADMIN)
        assert admin is not None
        password = created
        if password is None:
            import secrets

            password = secrets.token_urlsafe(12)
            set_password(db, admin, password)
        built = build_demo_tree(db, Actor.of(admin))
        db.commit()
    typer.secho(f"Demo instance in {data_dir.resolve()}", fg=typer.colors.GREEN)
    typer.secho(f"  sign in as {BUILTIN_ADMIN!r} with password {password!r}",
                fg=typer.colors.GREEN)
    if built:
        typer.echo("  created the demo tree 'Demo facility' and the workflow 'Notebook'")
    if not no_serve:
        _serve(settings, host, port)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Bring the database schema to the newest revision."""
    settings = _settings(data_dir)
    _ensure_admin(_sessions(settings))
    typer.echo("database is up to date")


@admin_app.command("create-user")
def create_user(
    username: str,
    password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True,
                                          confirmation_prompt=True)],
    role: Annotated[list[str] | None, typer.Option("--role", help="repeat for several")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    first_name: Annotated[str, typer.Option("--first-name")] = "",
    last_name: Annotated[str, typer.Option("--last-name")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a local user."""
    from cryovault.access import users
    from cryovault.errors import DomainError

    sessions = _sessions(_settings(data_dir))
    with sessions() as db:
        try:
            user = users.create_user(db, username, password, email=email, roles=role or [],
                                     first_name=first_name, last_name=last_name)
            db.commit()
        except DomainError as exc:
            raise _fail(exc.message) from None
        roles = ", ".join(sorted(user.role_names)) or "no roles"
    typer.echo(f"created user {username!r} ({roles})")


@admin_app.command("set-password")
def set_password(
    username: str,
    password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True,
                                          confirmation_prompt=True)],
    data_dir: DataDir = None,
) -> None:
    """Set a user's password."""
    from cryovault.access import users
    from cryovault.errors import DomainError

    sessions = _sessions(_settings(data_dir))
    with sessions() as db:
        user = users.find_by_login(db, username)
        if user is None:
            raise _fail(f"no user named {username!r}")
        try:
            users.set_password(db, user, password)
            db.commit()
        except DomainError as exc:
            raise _fail(exc.message) from None
    typer.echo(f"password of {username!r} changed")


if __name__ == "__main__":
    app()


@storage_app.command("cleanup")
def storage_cleanup(
    data_dir: DataDir = None,
    grace_minutes: Annotated[int, typer.Option(
        "--grace-minutes", min=0, help="leave alone what changed more recently (transfers in "
        "progress)")] = 60,
) -> None:
    """Remove what crashes, cancelled uploads and deletions left in the storages."""
    from datetime import timedelta

    from cryovault.storage.cleanup import run_cleanup
    from cryovault.storage.registry import StorageSet

    settings = _settings(data_dir)
    report = run_cleanup(_sessions(settings), settings, StorageSet.from_settings(settings),
                         grace=timedelta(minutes=grace_minutes))
    typer.echo(f"removed: {report.trash_removed} deleted files, {report.staged_removed} staged "
               f"leftovers, {report.uploads_expired} expired uploads, {report.orphans_removed} "
               f"unregistered files; {report.bytes_freed:,} bytes freed")


@storage_app.command("verify")
def storage_verify(data_dir: DataDir = None) -> None:
    """Read every registered file and compare it with its SHA-256; flag the damaged ones."""
    from cryovault.storage.files import verify_all
    from cryovault.storage.registry import StorageSet

    settings = _settings(data_dir)

    def report(count: int, stored, integrity: str) -> None:
        if integrity != "ok":
            typer.secho(f"{integrity}: {stored.storage}:{stored.key}", fg=typer.colors.RED)
        elif count % 1000 == 0:
            typer.echo(f"{count} files checked …")

    damaged = verify_all(_sessions(settings), StorageSet.from_settings(settings), report)
    if damaged:
        raise _fail(f"{len(damaged)} damaged or missing files were flagged; restore them from "
                    "a copy")
    typer.echo("every registered file matches its checksum")
