"""The `cryovault` command: serve, demo, database and administration commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryovault.ingest.simulator.cli import simulate_app
from cryovault.ingest.watcher.cli import watch_app
from cryovault.settings import Settings
from cryovault.tomo_cli import tomo_app

app = typer.Typer(help="cryovault: data management for cryo-EM facilities.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
storage_app = typer.Typer(help="Storages: cleanup and integrity checks.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(storage_app, name="storage")
app.add_typer(watch_app, name="watch")
app.add_typer(simulate_app, name="simulate")
app.add_typer(tomo_app, name="tomo")

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


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import os

    import uvicorn

    from cryovault.web.app import create_app

    typer.echo(f"cryovault portal on http://{host}:{port}  (API docs: /api/docs)")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
        return
    # Several processes: each builds its app from the environment, so the settings given on
    # the command line travel there.
    os.environ["CRYOVAULT_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["CRYOVAULT_DATABASE_URL"] = settings.effective_database_url
    uvicorn.run("cryovault.web.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="info")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: DataDir = None,
          workers: Annotated[int, typer.Option("--workers", min=1, max=64,
                                               help="server processes (each with its job "
                                                    "worker thread)")] = 1) -> None:
    """Start the portal and the API."""
    settings = _settings(data_dir)
    _ensure_admin(_sessions(settings))
    _serve(settings, host, port, workers)


@app.command()
def demo(host: str = "127.0.0.1", port: int = 8000,
         data_dir: Annotated[Path, typer.Option("--data-dir")] = Path("demo-data"),
         no_serve: Annotated[bool, typer.Option("--no-serve", help="set up only")] = False,
         no_feeds: Annotated[bool, typer.Option("--no-feeds", help="no simulated instruments")
                             ] = False,
         ) -> None:
    """Set up a demo instance (admin account, example tree) and serve it, with a simulated EPU
    session and tilt series arriving live through watchers."""
    from cryovault.access.actor import Actor
    from cryovault.access.users import (
        BUILTIN_ADMIN,
        ensure_builtin_admin,
        find_by_login,
        set_password,
    )
    from cryovault.workspace.demo import build_demo_tree, demo_runs

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
        feeds = [] if no_feeds or no_serve else demo_runs(db)
        token = None
        if feeds:
            from cryovault.access.credentials import create_token

            _, token = create_token(db, admin, "demo instruments")
        db.commit()
    typer.secho(f"Demo instance in {data_dir.resolve()}", fg=typer.colors.GREEN)
    typer.secho(f"  sign in as {BUILTIN_ADMIN!r} with password {password!r}",
                fg=typer.colors.GREEN)
    if built:
        typer.echo("  created the demo tree 'Demo facility' and the workflow 'Notebook'")
    if no_serve:
        return
    processes = []
    if feeds and token:
        from cryovault.ingest.demo_feed import DemoRun, start_demo_feeds

        typer.echo(f"  simulated microscopes write into {(data_dir / 'instrument').resolve()}; "
                   "watchers register their files live (logs in "
                   f"{(data_dir / 'logs').resolve()})")
        processes = start_demo_feeds(data_dir, [DemoRun(*run) for run in feeds],
                                     f"http://{host}:{port}", token)
    try:
        _serve(settings, host, port)
    finally:
        if processes:
            from cryovault.ingest.demo_feed import stop_demo_feeds

            stop_demo_feeds(processes)


@app.command()
def worker(data_dir: DataDir = None,
           poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.1)] = 2.0,
           ) -> None:
    """Run platform jobs (deletion, archive, export …) from the shared database, until
    interrupted. Run as many as you like, on any host that reaches the database."""
    import signal
    import threading

    from cryovault.jobs.runner import JobEnvironment, Worker
    from cryovault.storage.registry import StorageSet
    from cryovault.web import app as _register_handlers  # noqa: F401 (job handlers)

    settings = _settings(data_dir)
    env = JobEnvironment(_sessions(settings), settings, StorageSet.from_settings(settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    running = Worker(env, poll_seconds=poll_seconds).start()
    typer.echo("cryovault worker running; Ctrl-C to stop")
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    running.stop()


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
    from cryovault.access.licences import Licensing, seat_new_user
    from cryovault.errors import DomainError

    settings = _settings(data_dir)
    sessions = _sessions(settings)
    with sessions() as db:
        try:
            user = users.create_user(db, username, password, email=email, roles=role or [],
                                     first_name=first_name, last_name=last_name)
            # Like users added in the portal: a free licence seat once licences are installed.
            seat_new_user(db, Licensing.from_config(settings.license_public_key), user)
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


@admin_app.command("make-license-keypair")
def make_license_keypair(
    private_key: Annotated[Path, typer.Option("--private-key", help="where to write the private "
                                              "key (PEM); keep it secret")],
    public_key: Annotated[Path | None, typer.Option("--public-key", help="also write the public "
                                                    "key (base64) here")] = None,
) -> None:
    """Make an Ed25519 key pair for signing licence keys (SPEC ADM-4)."""
    import os

    from cryovault.access.licences import make_keypair

    if private_key.exists():
        raise _fail(f"{private_key} exists already: choose another path")
    pem, public = make_keypair()
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    if public_key:
        public_key.write_text(public + "\n")
    typer.echo(f"private key written to {private_key}")
    typer.echo(f"public key (set CRYOVAULT_LICENSE_PUBLIC_KEY on the installation): {public}")


@admin_app.command("issue-license")
def issue_license(
    private_key: Annotated[Path, typer.Option("--private-key", help="PEM from "
                                              "make-license-keypair")],
    platform_id: Annotated[str, typer.Option("--platform-id", help="the installation's platform "
                                             "id (License page, or 'cryovault admin "
                                             "platform-id')")],
    feature: Annotated[list[str], typer.Option("--feature", help="FEATURE=SEATS, e.g. "
                                               "portal=25; repeat for several")],
    expires: Annotated[str | None, typer.Option("--expires", help="expiry date or time (UTC), "
                                                "e.g. 2027-12-31")] = None,
    days: Annotated[int | None, typer.Option("--days", help="valid for this many days "
                                             "from now (instead of --expires)")] = None,
    customer: Annotated[str, typer.Option("--customer")] = "",
    output: Annotated[Path | None, typer.Option("--output", help="write the key to this file "
                                                "instead of printing it")] = None,
) -> None:
    """Sign a licence key for an installation (SPEC ADM-4)."""
    from datetime import UTC, datetime, timedelta

    from cryovault.access.licences import issue_license as issue
    from cryovault.access.licences import load_private_key
    from cryovault.errors import DomainError

    if (expires is None) == (days is None):
        raise _fail("give either --expires DATE or --days N")
    if days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=days)
    else:
        try:
            expires_at = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"--expires {expires!r} is not a date such as 2027-12-31") from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    seats: dict[str, int] = {}
    for item in feature:
        name, _, count = item.partition("=")
        if not count.strip().isdigit():
            raise _fail(f"--feature {item!r}: write FEATURE=SEATS, e.g. portal=25")
        seats[name.strip()] = int(count)
    try:
        key = issue(load_private_key(private_key.read_bytes()), platform_id=platform_id,
                    features=seats, expires_at=expires_at, customer=customer)
    except OSError as exc:
        raise _fail(f"cannot read {private_key}: {exc.strerror}") from None
    except DomainError as exc:
        raise _fail(exc.message) from None
    if output:
        output.write_text(key + "\n")
        typer.echo(f"licence key written to {output}")
    else:
        typer.echo(key)


@admin_app.command("platform-id")
def show_platform_id(data_dir: DataDir = None) -> None:
    """Print this installation's platform id (licences are issued for it)."""
    from cryovault.access.licences import platform_id

    sessions = _sessions(_settings(data_dir))
    with sessions() as db:
        value = platform_id(db)
        db.commit()
    typer.echo(value)


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


# -- science (issue #8): the logic lives in cryovault.science.commands -------------------------


@app.command()
def motion(
    movie: Annotated[Path, typer.Argument(help="movie: MRC/MRCS stack, TIFF fractions or EER")],
    out: Annotated[Path, typer.Option("--out", help="aligned sum (MRC); the dose-weighted "
                                      "sum goes beside it as <name>_DW.mrc")],
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Å per pixel")] = None,
    dose_per_frame: Annotated[float | None, typer.Option("--dose-per-frame",
                                                         help="e⁻/Å² per frame")] = None,
    gain: Annotated[Path | None, typer.Option("--gain", help="gain reference (MRC or TIFF), "
                                              "multiplied into the frames")] = None,
    defect_map: Annotated[Path | None, typer.Option("--defect-map", help="defect map (MRC or "
                                                    "TIFF, non-zero = defect)")] = None,
    eer_grouping: Annotated[int | None, typer.Option("--eer-grouping", help="EER frames per "
                                                     "fraction")] = None,
    eer_upsampling: Annotated[int, typer.Option("--eer-upsampling", help="1 (4K) or 2 (8K)")] = 1,
    patches: Annotated[str, typer.Option("--patches", help="patch grid, e.g. 5x5; 1x1 = "
                                         "global only")] = "5x5",
    binning: Annotated[int, typer.Option("--bin", help="Fourier binning of the sums")] = 1,
    voltage: Annotated[float, typer.Option("--voltage", help="kV, for dose weighting")] = 300.0,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Motion correction: global and patch alignment, aligned and dose-weighted sums."""
    import json

    from cryovault.science.commands import MotionCommand, run_motion
    from cryovault.science.errors import ScienceInputError

    try:
        result = run_motion(MotionCommand(movie, pixel_size, dose_per_frame, out, gain,
                                          defect_map, eer_grouping, eer_upsampling, patches,
                                          binning, voltage))
    except (ScienceInputError, OSError) as exc:
        raise _fail(str(exc)) from None
    if json_output:
        typer.echo(json.dumps(result.to_json()))
    else:
        typer.echo(f"{len(result.shifts_px)} frames aligned; drift total "
                   f"{result.total_drift_angstrom:.1f} Å (early {result.early_drift_angstrom:.1f}"
                   f", late {result.late_drift_angstrom:.1f}); sums: "
                   + ", ".join(result.output.values()))


@app.command()
def ctf(
    micrograph: Annotated[Path, typer.Argument(help="micrograph (MRC or TIFF)")],
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Å per pixel")] = None,
    voltage: Annotated[float, typer.Option("--voltage", help="kV")] = 300.0,
    cs: Annotated[float, typer.Option("--cs", help="spherical aberration, mm")] = 2.7,
    amplitude_contrast: Annotated[float, typer.Option("--amplitude-contrast")] = 0.07,
    phase_plate: Annotated[bool, typer.Option("--phase-plate", help="fit a phase shift")] = False,
    defocus_range: Annotated[str | None, typer.Option("--defocus-range",
                                                      help="MIN:MAX in Å")] = None,
    resolution_range: Annotated[str | None, typer.Option("--resolution-range",
                                                         help="LOW:HIGH in Å")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    diagnostic: Annotated[Path | None, typer.Option("--diagnostic", help="diagnostic PNG")] = None,
) -> None:
    """CTF estimation: defocus U/V, astigmatism angle, phase shift, fit resolution."""
    import json

    from cryovault.science.commands import CtfCommand, run_ctf
    from cryovault.science.errors import ScienceInputError

    try:
        result = run_ctf(CtfCommand(micrograph, pixel_size, voltage, cs, amplitude_contrast,
                                    phase_plate, defocus_range, resolution_range, diagnostic))
    except (ScienceInputError, OSError) as exc:
        raise _fail(str(exc)) from None
    if json_output:
        typer.echo(json.dumps(result.to_json()))
    else:
        typer.echo(f"defocus U {result.defocus_u_angstrom:.0f} Å, V "
                   f"{result.defocus_v_angstrom:.0f} Å, angle "
                   f"{result.astigmatism_angle_degrees:.1f}°, phase shift "
                   f"{result.phase_shift_degrees:.1f}°, fit resolution "
                   f"{result.resolution_angstrom:.1f} Å, score {result.score:.3f}"
                   + ("" if result.fit_ok else f" — FIT FAILED ({result.failure_reason})"))
