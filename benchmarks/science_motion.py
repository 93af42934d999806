#!/usr/bin/env python
"""Benchmark of motion correction (issue #8): a simulated 4096 × 4096 × 40 movie at
1 e⁻/Å²/frame and 1 Å/px, global + 5 × 5 patch alignment + aligned and dose-weighted sums.

It simulates the movie once into --workdir (MRC, uint16 counts, plus its ground truth), then runs
`cryovault.science` on it in a fresh subprocess (so that the peak memory, ru_maxrss, is that of
the correction alone: reading the file, aligning, summing) and prints a table: wall time against
the 20 s target, peak memory against 4 × the movie's float32 size, the accuracy against the
truth (global RMS ≤ 0.15 px, patch RMS ≤ 0.35 px), and the floor: the FFT work the method cannot
avoid (one forward transform per frame and one inverse per sum, at full size) timed on this
machine with the same FFT (scipy.fft, all CPUs). Peers (teamtomo's torch-motion-correction) run
on the same file when installed (`pip install -c constraints.txt -e '.[peers]'`), else are
skipped with the reason.

    .venv/bin/python benchmarks/science_motion.py                    # full size
    .venv/bin/python benchmarks/science_motion.py --size 1024 --frames 20 --dose 16   # quick

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


def accuracy(summary: dict, truth_path: Path) -> tuple[float, float]:
    from cryovault.science.simulate import MovieTruth

    t = np.load(truth_path)
    truth = MovieTruth(tuple(int(v) for v in t["shape"]), t["drift"], t["coefficients"],
                       t["growth"])
    shifts = np.array(summary["shifts_px"])
    global_rms = float(np.sqrt(((shifts - truth.applied_shifts_px) ** 2).sum(1).mean()))
    ny, nx = truth.shape
    errors = []
    n_side = int(round(len(summary["patch_shifts_px"]) ** 0.5)) or 1
    size = (nx / n_side, ny / n_side)
    for patch in summary["patch_shifts_px"]:
        expected = truth.applied_shift_in_box_px(tuple(patch["centre"]), size)
        errors.append(((np.array(patch["shifts"]) - expected) ** 2).sum(1))
    patch_rms = float(np.sqrt(np.mean(errors))) if errors else float("nan")
    return global_rms, patch_rms


def peer_torch_motion_correction(movie: Path) -> dict:
    if importlib.util.find_spec("torch_motion_correction") is None:
        return {"name": "torch-motion-correction", "skipped": "not installed (pip install -c "
                "constraints.txt -e '.[peers]')"}
    import mrcfile
    import torch
    import torch_motion_correction as tmc

    with mrcfile.open(movie, permissive=True) as mrc:
        frames = torch.as_tensor(np.asarray(mrc.data, dtype=np.float32))
    t0 = time.perf_counter()
    estimate = getattr(tmc, "estimate_motion", None)
    correct = getattr(tmc, "correct_motion", None)
    if estimate is None or correct is None:
        return {"name": "torch-motion-correction", "skipped": "API not recognised "
                f"(found {sorted(n for n in dir(tmc) if not n.startswith('_'))})"}
    deformation = estimate(frames, pixel_spacing=1.0)
    correct(frames, deformation)
    return {"name": "torch-motion-correction", "seconds": time.perf_counter() - t0,
            "device": "cpu", "torch_threads": torch.get_num_threads()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--dose", type=float, default=1.0, help="e⁻/Å² per frame")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryovault-bench-science"))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dose, args.out)
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
    global_rms, patch_rms = accuracy(run["result"], truth)
    movie_f32 = args.size * args.size * args.frames * 4
    peers = [] if args.no_peers else [peer_torch_motion_correction(movie)]
    cpu = run["cpu_user_s"] + run["cpu_system_s"]
    rows = [
        ("wall time (s)", f"{run['seconds']:.1f}", f"≤ {TARGET_S:.0f}",
         f"floor {floor:.1f} s ({args.frames} rfft2 + 2 irfft2 at {args.size}², "
         f"{workers} threads)"),
        ("CPU time (s)", f"{cpu:.1f}", "",
         f"user {run['cpu_user_s']:.1f} + kernel {run['cpu_system_s']:.1f}"),
        ("peak memory (GiB)", f"{run['peak_bytes'] / 2**30:.2f}",
         f"≤ {MEMORY_FACTOR * movie_f32 / 2**30:.1f}", f"movie float32 {movie_f32 / 2**30:.2f}"),
        ("global shift RMS error (px)", f"{global_rms:.3f}", "≤ 0.15", ""),
        ("patch shift RMS error (px)", f"{patch_rms:.3f}", "≤ 0.35", ""),
        ("total drift (Å)", f"{run['result']['total_drift_angstrom']:.1f}", "", ""),
    ]
    print(f"\nmotion correction, {args.size}×{args.size}×{args.frames}, {args.dose:g} e⁻/Å²/frame,"
          f" 1 Å/px, 5×5 patches — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'figure':32} {'measured':>10} {'target':>10}  note")
    for name, value, target, note in rows:
        print(f"{name:32} {value:>10} {target:>10}  {note}")
    print("where the wall time went: " + ", ".join(
        f"{name} {value:.1f} s" for name, value in run["steps_s"].items()))
    for peer in peers:
        if "skipped" in peer:
            print(f"peer {peer['name']}: skipped — {peer['skipped']}")
        else:
            print(f"peer {peer['name']}: {peer['seconds']:.1f} s on {peer['device']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(), "size": args.size, "frames": args.frames,
        "dose_per_frame": args.dose, "seconds": run["seconds"], "fft_floor_seconds": floor,
        "peak_bytes": run["peak_bytes"], "movie_float32_bytes": movie_f32,
        "cpu_user_seconds": run["cpu_user_s"], "cpu_system_seconds": run["cpu_system_s"],
        "steps_seconds": run["steps_s"], "load_average_before": run["load_before"],
        "global_rms_px": global_rms, "patch_rms_px": patch_rms, "peers": peers,
        "load_average": os.getloadavg()[0], "fft_workers": workers}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
