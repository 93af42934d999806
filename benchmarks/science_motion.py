#!/usr/bin/env python
"""Benchmark of motion correction (issue #8): a simulated 4096 × 4096 × 40 movie at
1 e⁻/Å²/frame and 1 Å/px, global + 5 × 5 patch alignment + aligned and dose-weighted sums.

It simulates the movie once into --workdir (MRC, uint16 counts, plus its ground truth), then runs
`cryovault.science` on it in a fresh subprocess (so that the peak memory, ru_maxrss, is that of
the correction alone: reading the file, aligning, summing) and prints a table: wall time against
the 20 s target, peak memory against 4 × the movie's float32 size, the accuracy against the
truth (global RMS ≤ 0.15 px, patch RMS ≤ 0.35 px), and the floor: the FFT work the method cannot
avoid (one forward transform per frame and one inverse per sum, at full size) timed on this
machine with the same FFT (scipy.fft, all CPUs). The peer, teamtomo's torch-motion-correction,
runs on the same file when installed (`pip install -c constraints.txt -e '.[peers]'`), else is
skipped with the reason: in its own subprocess, global cross-correlation then its deformation
field on 5 × 5 patches then correct_motion and the sums (`PeerMotionSettings`); its time,
memory and accuracy (measured like ours) and its own FFT floor are printed beside ours.

    .venv/bin/python benchmarks/science_motion.py                    # full size
    .venv/bin/python benchmarks/science_motion.py --size 1024 --frames 10 --dose 16   # quick

Results: a table on stdout and benchmarks/results/science_motion.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "science_motion.json"
TARGET_S = 20.0
MEMORY_FACTOR = 4.0


def simulate(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path]:
    from cryovault.science.simulate import simulate_movie, write_mrc_movie

    stem = f"movie_{args.size}_{args.frames}_{args.dose:g}_{args.seed}"
    movie_path, truth_path = workdir / f"{stem}.mrc", workdir / f"{stem}_truth.npz"
    if movie_path.exists() and truth_path.exists():
        return movie_path, truth_path
    t0 = time.perf_counter()
    sim = simulate_movie((args.size, args.size), args.frames, pixel_size_angstrom=1.0,
                         dose_per_frame=args.dose, seed=args.seed)
    write_mrc_movie(movie_path, sim.frames, 1.0)
    np.savez(truth_path, drift=sim.truth.drift_px, coefficients=sim.truth.local_coefficients,
             growth=sim.truth.local_growth, shape=np.array(sim.truth.shape))
    print(f"simulated {movie_path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return movie_path, truth_path


def worker(movie: Path, dose: float, out: Path) -> None:
    """Run in a subprocess: time the correction and report its peak memory."""
    from cryovault.science.commands import MotionCommand, run_motion

    t0 = time.perf_counter()
    cpu0 = os.times()
    result = run_motion(MotionCommand(movie, 1.0, dose, out, patches="5x5"))
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steps = dict(result.timings_s)
    steps["read + hot pixels, write sums"] = seconds - sum(steps.values())
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "result": result.to_json(),
                      "cpu_user_s": cpu1.user - cpu0.user,
                      "cpu_system_s": cpu1.system - cpu0.system, "steps_s": steps,
                      "load_before": os.getloadavg()[0]}))


def fft_floor(size: int, frames: int, workers: int) -> float:
    import scipy.fft as sfft

    frame = np.random.default_rng(0).random((size, size), dtype=np.float32)
    sfft.rfft2(frame, workers=workers)
    t0 = time.perf_counter()
    for _ in range(3):
        spectrum = sfft.rfft2(frame, workers=workers)
    forward = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        sfft.irfft2(spectrum, s=frame.shape, workers=workers)
    inverse = (time.perf_counter() - t0) / 3
    return frames * forward + 2 * inverse


def rms_px(errors: np.ndarray) -> tuple[float, float]:
    """RMS length of (n, 2) shift errors, as they are (frame 0 is the reference of both the
    truth and the estimate) and with their mean removed (an offset common to all frames moves
    the sum without blurring it)."""
    errors = np.asarray(errors, dtype=np.float64)
    centred = errors - errors.mean(axis=0)
    return (float(np.sqrt((errors**2).sum(1).mean())),
            float(np.sqrt((centred**2).sum(1).mean())))


def peer_fft_floor(size: int, frames: int) -> float:
    """The full-size transforms the peer runs, timed with torch.fft as it runs them: its
    global cross-correlation transforms every frame and inverse-transforms n − 1 correlation
    maps; the dose-weighted sum transforms every corrected frame and inverts the sum."""
    import torch

    frame = torch.rand(size, size)
    spectrum = torch.fft.rfft2(frame)
    t0 = time.perf_counter()
    for _ in range(3):
        spectrum = torch.fft.rfft2(frame)
    forward = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        torch.fft.irfft2(spectrum, s=(size, size))
    inverse = (time.perf_counter() - t0) / 3
    return 2 * frames * forward + frames * inverse


def accuracy(summary: dict, truth_path: Path) -> tuple[float, float, float]:
    from cryovault.science.simulate import MovieTruth

    t = np.load(truth_path)
    truth = MovieTruth(tuple(int(v) for v in t["shape"]), t["drift"], t["coefficients"],
                       t["growth"])
    shifts = np.array(summary["shifts_px"])
    global_rms, global_offset_free = rms_px(shifts - truth.applied_shifts_px)
    ny, nx = truth.shape
    errors = []
    n_side = int(round(len(summary["patch_shifts_px"]) ** 0.5)) or 1
    size = (nx / n_side, ny / n_side)
    for patch in summary["patch_shifts_px"]:
        expected = truth.applied_shift_in_box_px(tuple(patch["centre"]), size)
        errors.append(((np.array(patch["shifts"]) - expected) ** 2).sum(1))
    patch_rms = float(np.sqrt(np.mean(errors))) if errors else float("nan")
    return global_rms, patch_rms, global_offset_free


PEER_MOTION = "torch-motion-correction"


@dataclass(frozen=True)
class PeerMotionSettings:
    """How the peer is run: its global cross-correlation, then its spline deformation field
    (`estimate_local_motion`, started from the global shifts) on a grid of patches like ours,
    then `correct_motion` (every frame resampled through the field) and the sums."""

    patches: int = 5  # control points per side of the field, and patches per side
    patch_fraction: float = 0.3  # patch side / image side: 5 × 5 patches at 50 % overlap
    iterations: int = 100  # OptimizationConfig.max_iterations (the package's default)
    optimizer: str = "adam"  # OptimizationConfig.optimizer_type (the package's default)

    def describe(self, size: int, frames: int) -> str:
        side = patch_side(size, self.patch_fraction)
        return (f"estimate_global_motion (defaults) → estimate_local_motion: field "
                f"{frames}×{self.patches}×{self.patches}, {self.patches}×{self.patches} patches "
                f"of {side}² at 50 % overlap, {self.optimizer}, {self.iterations} iterations "
                f"(package defaults otherwise) → correct_motion → sum and dose-weighted sum "
                f"(torch_fourier_filter.dose_weight, frame by frame)")


def patch_side(size: int, fraction: float) -> int:
    return int(size * fraction)


def peer_worker(movie: Path, dose: float, out: Path, settings: PeerMotionSettings) -> None:
    """Run in a subprocess: the peer's motion correction of `movie`, timed step by step; its
    deformation field is saved to `out` (.npz) for the accuracy, written in the parent."""
    import mrcfile
    import torch
    import torch_motion_correction as tmc
    from torch_fourier_filter.dose_weight import (
        dose_weight_frame_chunk,
        dose_weight_normalization_grid,
    )

    torch.set_num_threads(os.cpu_count() or 1)
    steps: dict[str, float] = {}
    cpu0 = os.times()
    t0 = time.perf_counter()
    mark = t0

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = now - mark
        mark = now

    with mrcfile.mmap(movie, mode="r", permissive=True) as mrc:
        frames = torch.from_numpy(np.asarray(mrc.data, dtype=np.float32))
        pixel_size = float(mrc.voxel_size.x) or 1.0
    n, ny, nx = frames.shape
    step("read movie as float32")
    global_field = tmc.estimate_global_motion(frames, pixel_spacing=pixel_size)
    step("global cross-correlation")
    side = patch_side(min(ny, nx), settings.patch_fraction)
    field, _ = tmc.estimate_local_motion(
        frames, pixel_size, (n, settings.patches, settings.patches),
        tmc.PatchSamplingConfig(patch_shape=(side, side), overlap=0.5),
        initial_deformation_field=global_field,
        optimization=tmc.OptimizationConfig(max_iterations=settings.iterations,
                                            optimizer_type=settings.optimizer))
    step("local deformation field")
    corrected = tmc.correct_motion(frames, field, pixel_spacing=pixel_size)
    del frames
    step("correct_motion (resample every frame)")
    aligned = corrected.sum(dim=0)
    ne, normalization = dose_weight_normalization_grid((ny, nx), pixel_size, n,
                                                       dose_per_frame=dose)
    weighted = torch.zeros_like(ne, dtype=torch.complex64)
    for f in range(n):
        spectrum = torch.fft.rfft2(corrected[f])
        weighted += dose_weight_frame_chunk(spectrum[None], f, ne, normalization,
                                            dose_per_frame=dose, in_place=True)[0]
    dose_weighted = torch.fft.irfft2(weighted, s=(ny, nx))
    step("sum + dose-weighted sum")
    for suffix, image in (("", aligned), ("_DW", dose_weighted)):
        with mrcfile.new(out.with_name(f"peer_aligned{suffix}.mrc"), overwrite=True) as mrc:
            mrc.set_data(image.numpy().astype(np.float32))
            mrc.voxel_size = pixel_size
    step("write sums")
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    np.savez(out, field=field.data.detach().numpy(), global_field=global_field.data.numpy(),
             pixel_size=pixel_size)
    print(json.dumps({"seconds": seconds, "steps_s": steps,
                      "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "cpu_user_s": cpu1.user - cpu0.user,
                      "cpu_system_s": cpu1.system - cpu0.system,
                      "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                      "version": tmc.__version__}))


def peer_applied_shifts(field_yx_angstrom: np.ndarray, pixel_size: float,
                        points_xy: np.ndarray, shape: tuple[int, int],
                        n: int) -> np.ndarray:
    """(n, 2) [x, y] the shift that aligns each frame onto frame 0 in our convention
    (motion.py: applied = −(content displacement), frame 0 = 0) for `n` frames, averaged over
    `points_xy` ((m, 2) pixel positions), from the peer's deformation field: (2, nt, nh, nw) (y, x)
    displacements of the content in Å, evaluated at normalised (t, y, x) with t = f / (n − 1)
    and y = row / (ny − 1) (correct_motion's sampling; checked on a synthetic shift: content
    moved by +3 px in x gives +3 px in the field's x channel)."""
    import torch
    from torch_motion_correction import DeformationField

    field = DeformationField(torch.from_numpy(np.ascontiguousarray(field_yx_angstrom)))
    ny, nx = shape
    t = np.repeat(np.arange(n) / max(n - 1, 1), len(points_xy))
    y = np.tile(points_xy[:, 1] / max(ny - 1, 1), n)
    x = np.tile(points_xy[:, 0] / max(nx - 1, 1), n)
    tyx = torch.from_numpy(np.stack([t, y, x], axis=1).astype(np.float32))
    with torch.no_grad():
        yx = field(tyx).numpy().reshape(n, len(points_xy), 2).mean(axis=1)
    displacement_xy = yx[:, ::-1] / pixel_size
    return -(displacement_xy - displacement_xy[0])


def box_points(centre: tuple[float, float], size: tuple[float, float]) -> np.ndarray:
    """The 9 × 9 points over a box at which MovieTruth.applied_shift_in_box_px averages."""
    xs = centre[0] + np.linspace(-0.5, 0.5, 9) * size[0]
    ys = centre[1] + np.linspace(-0.5, 0.5, 9) * size[1]
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def peer_accuracy(npz: Path, truth_path: Path, patch_centres: list) -> dict:
    """The peer's global and patch RMS errors, measured as ours: the global shift is its field
    averaged over the whole frame (the truth's local field has zero mean over the frame), a
    patch's shift its field averaged over the same box as the truth's."""
    from cryovault.science.simulate import MovieTruth

    t = np.load(truth_path)
    truth = MovieTruth(tuple(int(v) for v in t["shape"]), t["drift"], t["coefficients"],
                       t["growth"])
    peer = np.load(npz)
    pixel_size = float(peer["pixel_size"])
    ny, nx = truth.shape
    n = len(truth.applied_shifts_px)
    whole = box_points(((nx - 1) / 2, (ny - 1) / 2), (nx - 1, ny - 1))
    rms = {}
    for key, name in (("field", "global_rms_px"), ("global_field", "xc_only_global_rms_px")):
        shifts = peer_applied_shifts(peer[key], pixel_size, whole, truth.shape, n)
        rms[name], rms[name.replace("_rms", "_offset_free_rms")] = rms_px(
            shifts - truth.applied_shifts_px)
    n_side = int(round(len(patch_centres) ** 0.5)) or 1
    size = (nx / n_side, ny / n_side)
    errors = []
    for centre in patch_centres:
        shifts = peer_applied_shifts(peer["field"], pixel_size, box_points(centre, size),
                                     truth.shape, n)
        expected = truth.applied_shift_in_box_px(tuple(centre), size)
        errors.append(((shifts - expected) ** 2).sum(1))
    rms["patch_rms_px"] = float(np.sqrt(np.mean(errors)))
    return rms


def peer_torch_motion_correction(args: argparse.Namespace, movie: Path, truth: Path,
                                 patch_centres: list) -> dict:
    if importlib.util.find_spec("torch_motion_correction") is None:
        return {"name": PEER_MOTION, "skipped": "not installed (pip install -c "
                "constraints.txt -e '.[peers]')"}
    settings = PeerMotionSettings(iterations=args.peer_iterations, optimizer=args.peer_optimizer)
    out = args.workdir / "peer_field.npz"
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, __file__, "--peer-worker", str(movie), "--dose",
                           str(args.dose), "--out", str(out), "--peer-iterations",
                           str(settings.iterations), "--peer-optimizer", settings.optimizer],
                          capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        return {"name": PEER_MOTION, "skipped": "failed: " + proc.stderr.strip()[-800:]}
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    run.update(peer_accuracy(out, truth, patch_centres))
    run.update({"name": PEER_MOTION, "device": "cpu",
                "settings": settings.describe(args.size, args.frames)})
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--dose", type=float, default=1.0, help="e⁻/Å² per frame")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryovault-bench-science"))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peer-iterations", type=int, default=PeerMotionSettings.iterations,
                        help="iterations of the peer's deformation-field optimiser")
    parser.add_argument("--peer-optimizer", default=PeerMotionSettings.optimizer,
                        choices=["adam", "lbfgs", "sgd", "rmsprop"])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--peer-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dose, args.out)
        return 0
    if args.peer_worker:
        peer_worker(args.peer_worker, args.dose, args.out,
                    PeerMotionSettings(iterations=args.peer_iterations,
                                       optimizer=args.peer_optimizer))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    movie, truth = simulate(args, args.workdir)
    out = args.workdir / "aligned.mrc"
    proc = subprocess.run([sys.executable, __file__, "--worker", str(movie), "--dose",
                           str(args.dose), "--out", str(out)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    from cryovault.science.ctf import fft_workers

    workers = fft_workers()
    floor = fft_floor(args.size, args.frames, workers)
    global_rms, patch_rms, global_offset_free = accuracy(run["result"], truth)
    movie_f32 = args.size * args.size * args.frames * 4
    centres = [p["centre"] for p in run["result"]["patch_shifts_px"]]
    peers = [] if args.no_peers else [peer_torch_motion_correction(args, movie, truth, centres)]
    ran = [p for p in peers if "skipped" not in p]
    peer = ran[0] if ran else None
    if peer:
        peer["fft_floor_seconds"] = peer_fft_floor(args.size, args.frames)

    def peer_cell(fmt: str, key: str) -> str:
        return format(peer[key], fmt) if peer else "-"

    def cpu(r: dict) -> float:
        return r["cpu_user_s"] + r["cpu_system_s"]

    rows = [
        ("wall time (s)", f"{run['seconds']:.1f}", peer_cell(".1f", "seconds"),
         f"≤ {TARGET_S:.0f}", f"floor {floor:.1f} s ({args.frames} rfft2 + 2 irfft2 at "
         f"{args.size}², {workers} threads)" + (
             f"; peer floor {peer['fft_floor_seconds']:.1f} s ({2 * args.frames} rfft2 + "
             f"{args.frames} irfft2, torch.fft)" if peer else "")),
        ("CPU time (s)", f"{cpu(run):.1f}", f"{cpu(peer):.1f}" if peer else "-", "",
         f"ours: user {run['cpu_user_s']:.1f} + kernel {run['cpu_system_s']:.1f}"),
        ("peak memory (GiB)", f"{run['peak_bytes'] / 2**30:.2f}",
         f"{peer['peak_bytes'] / 2**30:.2f}" if peer else "-",
         f"≤ {MEMORY_FACTOR * movie_f32 / 2**30:.1f}", f"movie float32 {movie_f32 / 2**30:.2f}"),
        ("global shift RMS error (px)", f"{global_rms:.3f}", peer_cell(".3f", "global_rms_px"),
         "≤ 0.15", "peer: its field averaged over the frame"
         + (f"; its cross-correlation alone {peer['xc_only_global_rms_px']:.3f}" if peer
            else "")),
        ("  same, common offset removed", f"{global_offset_free:.3f}",
         peer_cell(".3f", "global_offset_free_rms_px"), "", "what blurs the sum"),
        ("patch shift RMS error (px)", f"{patch_rms:.3f}", peer_cell(".3f", "patch_rms_px"),
         "≤ 0.35", "peer: its field averaged over our patch boxes"),
        ("total drift (Å)", f"{run['result']['total_drift_angstrom']:.1f}", "", "", ""),
    ]
    print(f"\nmotion correction, {args.size}×{args.size}×{args.frames}, {args.dose:g} e⁻/Å²/frame,"
          f" 1 Å/px, 5×5 patches — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {run['load_before']:.1f} → {os.getloadavg()[0]:.1f}")
    print(f"{'figure':30} {'cryovault':>10} {'peer':>10} {'target':>8}  note")
    for name, value, peer_value, target, note in rows:
        print(f"{name:30} {value:>10} {peer_value:>10} {target:>8}  {note}")
    print("where our wall time went: " + ", ".join(
        f"{name} {value:.1f} s" for name, value in run["steps_s"].items()))
    for p in peers:
        if "skipped" in p:
            print(f"peer {p['name']}: skipped — {p['skipped']}")
        else:
            print(f"peer = {p['name']} {p['version']} (torch {p['torch']}, "
                  f"{p['torch_threads']} threads, {p['device']}): {p['settings']}")
            print("where the peer's wall time went: " + ", ".join(
                f"{name} {value:.1f} s" for name, value in p["steps_s"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(), "size": args.size, "frames": args.frames,
        "dose_per_frame": args.dose, "seconds": run["seconds"], "fft_floor_seconds": floor,
        "peak_bytes": run["peak_bytes"], "movie_float32_bytes": movie_f32,
        "cpu_user_seconds": run["cpu_user_s"], "cpu_system_seconds": run["cpu_system_s"],
        "steps_seconds": run["steps_s"], "load_average_before": run["load_before"],
        "global_rms_px": global_rms, "patch_rms_px": patch_rms,
        "global_offset_free_rms_px": global_offset_free, "peers": peers,
        "load_average": os.getloadavg()[0], "fft_workers": workers}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
