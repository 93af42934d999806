"""`cryovault simulate epu|tomo`: write what a microscope would write, for demos and tests."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

simulate_app = typer.Typer(
    help="Simulate an acquisition: an EPU single-particle session or Tomography 5 tilt series "
         "written into a folder, file by file, as the instrument writes them (with a "
         "ground_truth.jsonl of what was simulated).",
    no_args_is_help=True)


class MovieFormat(StrEnum):
    tiff = "tiff"
    eer = "eer"


class Scheme(StrEnum):
    dose_symmetric = "dose-symmetric"
    sequential = "sequential"


_TILTS = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*:\s*(-?\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")

OutDir = Annotated[Path, typer.Argument(help="folder to write into (created; must be empty)",
                                        show_default=False)]
Rate = Annotated[float, typer.Option("--rate", min=0.0,
                                     help="acquisitions per second (0 = as fast as possible)")]
Frames = Annotated[int, typer.Option("--frames", min=2, max=400, help="frames per movie")]
Size = Annotated[int, typer.Option("--size", min=64, max=4096,
                                   help="edge of the movies and integrated images, px")]
Seed = Annotated[int, typer.Option("--seed", help="random seed (same seed, same data)")]
Format = Annotated[MovieFormat, typer.Option("--movie-format", case_sensitive=False,
                                             help="movie files: TIFF (LZW) or EER")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise _fail(f"{out_dir} is a file; give a folder to write the simulated data into")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise _fail(f"{out_dir} is not empty; give a new or empty folder (the simulator "
                    "writes a whole visit and its ground truth there)")


def parse_tilts(text: str) -> tuple[float, float, float]:
    """`MIN:MAX:STEP` in degrees, e.g. `-60:60:3`. Raises ValueError with a clear message."""
    match = _TILTS.match(text)
    if not match:
        raise ValueError(f"--tilts {text!r}: write MIN:MAX:STEP in degrees, e.g. -60:60:3")
    low, high, step = (float(group) for group in match.groups())
    if step <= 0:
        raise ValueError(f"--tilts {text!r}: the step must be positive")
    if low >= high:
        raise ValueError(f"--tilts {text!r}: MIN must be below MAX")
    if low < -80 or high > 80:
        raise ValueError(f"--tilts {text!r}: the stage tilts from -80° to 80° at most")
    count = int(round((high - low) / step)) + 1
    if abs(low + (count - 1) * step - high) > 1e-6:
        raise ValueError(f"--tilts {text!r}: MAX - MIN must be a multiple of STEP")
    if count > 161:
        raise ValueError(f"--tilts {text!r}: {count} tilts; use a larger step (at most 161)")
    return low, high, step


@simulate_app.command("epu")
def simulate_epu_command(
    out_dir: OutDir,
    squares: Annotated[int, typer.Option("--squares", min=1, max=100,
                                         help="grid squares to acquire")] = 2,
    holes: Annotated[int, typer.Option("--holes", min=1, max=300,
                                       help="foil holes per grid square")] = 5,
    rate: Rate = 0.5,
    acquisitions_per_hole: Annotated[int, typer.Option("--acquisitions-per-hole", min=1, max=12,
                                                       help="exposures per hole")] = 2,
    movie_format: Format = MovieFormat.tiff,
    frames: Frames = 8,
    size: Size = 512,
    seed: Seed = 0,
    movies: Annotated[Path | None, typer.Option(
        "--movies", help="write the movies under this folder instead, in the same sub-tree "
        "(as facilities that offload movies to another drive)")] = None,
    out_of_order: Annotated[bool, typer.Option(
        "--out-of-order", help="write some movies before their XML")] = False,
    no_movies: Annotated[bool, typer.Option("--no-movies",
                                            help="save no movies (EPU without fractions)")] = False,
    name: Annotated[str, typer.Option("--name", help="the session/visit label in the folder "
                                      "names")] = "sim-1",
) -> None:
    """Simulate an EPU session: atlas, session, grid squares, foil holes, exposures."""
    from cryovault.ingest.simulator.epu_plan import EpuOptions, SimulationRequestError
    from cryovault.ingest.simulator.epu_run import simulate_epu

    _check_out_dir(out_dir)
    if not re.fullmatch(r"[A-Za-z0-9-]{1,40}", name):
        raise _fail(f"--name {name!r}: use letters, digits and '-' only (it goes into EPU's "
                    "underscore-separated folder names)")
    if movies is not None and no_movies:
        raise _fail("--movies and --no-movies contradict each other; give one")
    if movies is not None and movies.exists() and not movies.is_dir():
        raise _fail(f"--movies {movies} is a file; give a folder")
    options = EpuOptions(
        squares=squares, holes=holes, acquisitions_per_hole=acquisitions_per_hole,
        rate_per_s=rate, movie_format=movie_format.value, frames=frames, size_px=size,
        seed=seed, movies_root=str(movies) if movies else None, out_of_order=out_of_order,
        write_movies=not no_movies, name=name)
    try:
        result = simulate_epu(out_dir, options, typer.echo)
    except SimulationRequestError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"EPU session {result.session_folder.name}: {result.acquisitions} exposures "
               f"written under {out_dir}; ground truth in {result.truth_path}")


@simulate_app.command("tomo")
def simulate_tomo_command(
    out_dir: OutDir,
    positions: Annotated[int, typer.Option("--positions", min=1, max=100,
                                           help="tilt-series positions")] = 1,
    tilts: Annotated[str, typer.Option("--tilts", help="MIN:MAX:STEP in degrees")] = "-60:60:3",
    rate: Annotated[float, typer.Option("--rate", min=0.0,
                                        help="tilts per second (0 = as fast as possible)")] = 0.5,
    movie_format: Format = MovieFormat.tiff,
    frames: Frames = 8,
    size: Size = 512,
    seed: Seed = 0,
    scheme: Annotated[Scheme, typer.Option("--scheme", case_sensitive=False,
                                           help="tilt order")] = Scheme.dose_symmetric,
    tilt_axis: Annotated[float, typer.Option("--tilt-axis", min=-360.0, max=360.0,
                                             help="tilt-axis angle, degrees counterclockwise "
                                                  "from +y")] = 85.0,
) -> None:
    """Simulate Tomography 5 tilt series: one movie per tilt and a .mdoc per position."""
    from cryovault.ingest.simulator.tomo_run import TomoOptions, simulate_tomo

    _check_out_dir(out_dir)
    try:
        low, high, step = parse_tilts(tilts)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    options = TomoOptions(positions=positions, tilt_min_deg=low, tilt_max_deg=high,
                          tilt_step_deg=step, rate_per_s=rate, movie_format=movie_format.value,
                          frames=frames, size_px=size, seed=seed, scheme=scheme.value,
                          tilt_axis_deg=tilt_axis)
    result = simulate_tomo(out_dir, options, typer.echo)
    typer.echo(f"{len(result.mdocs)} tilt series, {result.tilts} tilts written under {out_dir};"
               f" ground truth in {result.truth_path}")
