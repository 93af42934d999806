"""`cryovault tomo align` and `cryovault tomo reconstruct` (issue #10): the command line only;
what they do is in cryovault.science.tomo.commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


tomo_app = typer.Typer(help="Tomography: tilt-series alignment and reconstruction.",
                       no_args_is_help=True)


@tomo_app.command("align")
def tomo_align(
    stack: Annotated[Path, typer.Argument(help="tilt series: MRC stack, sections sorted by "
                                          "tilt angle (motion-corrected tilts)")],
    angles: Annotated[Path | None, typer.Option("--angles", help="tilt angles: IMOD .tlt / "
                                                ".rawtilt, one per section")] = None,
    mdoc: Annotated[Path | None, typer.Option("--mdoc", help="SerialEM/Tomo .mdoc of the "
                                              "series (angles, pixel size, tilt axis)")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Å per pixel")] = None,
    tilt_axis: Annotated[float | None, typer.Option("--tilt-axis", help="tilt-axis angle in "
                                                    "degrees (IMOD rotation angle)")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="folder of the outputs "
                                                 "(default: beside the stack)")] = None,
    voltage: Annotated[float, typer.Option("--voltage", help="kV")] = 300.0,
    cs: Annotated[float, typer.Option("--cs", help="spherical aberration, mm")] = 2.7,
    amplitude_contrast: Annotated[float, typer.Option("--amplitude-contrast")] = 0.07,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Clean the stack, align (pairs, positioning, patch tracking), CTF per tilt; IMOD files."""
    import json

    from cryovault.science.errors import ScienceInputError
    from cryovault.science.tomo.commands import AlignCommand, alignment_json, run_align

    try:
        result, outputs = run_align(AlignCommand(stack, angles, mdoc, pixel_size, tilt_axis,
                                                 out_dir, voltage, cs, amplitude_contrast))
    except (ScienceInputError, OSError) as exc:
        raise _fail(str(exc)) from None
    if json_output:
        typer.echo(json.dumps(alignment_json(result, outputs)))
        return
    kept = len(result.kept_indices)
    acc = result.accuracy_px
    typer.echo(f"{kept} of {len(result.tilt_angles_degrees)} tilts kept"
               + "".join(f"\n  dropped #{d.index} ({d.angle_degrees:.1f}°): {d.reason}"
                         for d in result.dropped))
    typer.echo(f"tilt axis {result.alignment.axis_degrees:.2f}° (corrected by "
               f"{result.axis_correction_degrees:+.2f}°), X tilt {result.x_tilt_degrees:.2f}°, "
               f"Y tilt {result.y_tilt_degrees:.2f}°; alignment accuracy mean "
               f"{float(acc.mean()):.2f} px, worst {float(acc.max()):.2f} px; handedness "
               f"{result.ctf.handedness}")
    typer.echo("outputs: " + ", ".join(outputs.values()))


@tomo_app.command("reconstruct")
def tomo_reconstruct(
    stack: Annotated[Path, typer.Argument(help="tilt series (MRC): the raw stack with --xf, "
                                          "or an aligned one; the clean stack when "
                                          "`tomo align` dropped tilts")],
    angles: Annotated[Path | None, typer.Option("--angles", help="tilt angles (.tlt): the "
                                                "corrected angles from `tomo align`")] = None,
    xf: Annotated[Path | None, typer.Option("--xf", help="IMOD .xf transforms that align the "
                                            "stack (from `tomo align`)")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Å per pixel of "
                                                     "the stack")] = None,
    binning: Annotated[int, typer.Option("--bin", help="binning of the reconstruction")] = 4,
    method: Annotated[str, typer.Option("--method", help="sirt")] = "sirt",
    iterations: Annotated[int, typer.Option("--iterations", help="SIRT iterations")] = 20,
    thickness: Annotated[str, typer.Option("--thickness", help="auto, or the volume's "
                                           "thickness in pixels of the stack")] = "auto",
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="folder of the outputs "
                                                 "(default: beside the stack)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """SIRT reconstruction, sample thickness and a preview of the central slices."""
    import json

    from cryovault.science.errors import ScienceInputError
    from cryovault.science.tomo.commands import (
        ReconstructCommand,
        reconstruction_json,
        run_reconstruct,
    )

    try:
        result = run_reconstruct(ReconstructCommand(stack, angles, pixel_size, xf, binning,
                                                    method, iterations, thickness, out_dir))
    except (ScienceInputError, OSError) as exc:
        raise _fail(str(exc)) from None
    if json_output:
        typer.echo(json.dumps(reconstruction_json(result)))
        return
    measured = ("no slab found" if result.thickness_nm is None else
                f"sample thickness {result.thickness_nm:.1f} ± "
                f"{result.thickness_uncertainty_nm:.1f} nm")
    typer.echo(f"volume {result.volume_path} ({result.volume_thickness_px} slices of "
               f"{result.voxel_size_angstrom:.2f} Å); {measured}; preview {result.preview_path}")
