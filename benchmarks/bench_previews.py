#!/usr/bin/env python
"""Benchmark of the file viewer's previews: time to first preview, and tile serving.

It writes a 4096×4096 float32 MRC micrograph (mrcfile) and a 40-frame 4096×4096 EER movie
(cryovault.formats.eer.write_eer, 7-bit codes, ~0.02 e⁻/pixel/frame as a Falcon 4i EER frame)
into a temporary directory, then measures with cryovault.formats:

- time to first preview = probe_image + build_preview into a fresh cache directory (preview.png,
  thumb.png, the full 8-bit plane for tiles and meta.json), median of --reps; with the source in
  the OS page cache ("warm") and, where the OS allows it, evicted from it first with
  posix_fadvise(DONTNEED) ("cold disk");
- where that time goes (read, contrast, binning + PNG, thumbnail, 8-bit plane + write);
- a second build_preview call (cache hit);
- the EER movie's summed-frame preview the same way;
- Deep Zoom tiles (512 px PNG): first request of each tile per level, then a cached request.

    .venv/bin/python benchmarks/bench_previews.py                          # full: 4096², 40 frames
    .venv/bin/python benchmarks/bench_previews.py --size 2048 --frames 8 --reps 3   # quick run

Results: a table on stdout and benchmarks/results/bench_previews.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from cryovault.formats import previews
from cryovault.formats.eer import random_events, write_eer
from cryovault.formats.images import probe_image, read_plane
from cryovault.formats.previews import (
    auto_contrast,
    bin_mean,
    build_preview,
    png_bytes,
    tile_png,
    to_u8,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_previews.json"
FIRST_PREVIEW_TARGET_MS = 1000.0


@dataclass
class Measurement:
    name: str
    samples_ms: list[float] = field(default_factory=list)
    target_ms: float | None = None
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def passed(self) -> bool | None:
        return None if self.target_ms is None else self.median_ms < self.target_ms

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "median_ms": round(self.median_ms, 2),
                "min_ms": round(min(self.samples_ms), 2),
                "max_ms": round(max(self.samples_ms), 2), "target_ms": self.target_ms,
                "pass": self.passed, "note": self.note,
                "samples_ms": [round(x, 2) for x in self.samples_ms]}


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def evict(path: Path) -> bool:
    """Drop one file's pages from the OS page cache (no effect on other files or users)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def make_mrc(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # a smooth ice-thickness gradient, a carbon edge and shot noise, like a micrograph
    image = 0.3 * x + 0.2 * y + 0.8 * (x + 0.3 * y > 0.85)
    image = image + rng.normal(scale=1.0, size=(size, size)).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32))
        mrc.voxel_size = 0.83


def make_eer(path: Path, size: int, frames: int, dose: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = int(dose * size * size)
    write_eer(path, (random_events(rng, size, size, events) for _ in range(frames)),
              width=size, height=size, n_frames=frames,
              acquisition_metadata=[("commercialName", "Falcon 4i", None),
                                    ("totalDose", dose * frames, "e/pixel"),
                                    ("sensorPixelSize.width", 1.4e-05, "m"),
                                    ("sensorPixelSize.height", 1.4e-05, "m")])


def first_preview(source: Path, work: Path, reps: int, cold: bool) -> Measurement:
    label = "cold disk" if cold else "warm OS cache"
    m = Measurement(f"{source.suffix[1:].upper()} first preview ({label})")
    for rep in range(reps):
        cache = work / f"cache-{source.suffix[1:]}-{label.split()[0]}-{rep}"
        shutil.rmtree(cache, ignore_errors=True)
        if cold:
            evict(source)
        start = time.perf_counter()
        info = probe_image(source)
        build_preview(source, cache, 0, info)
        m.samples_ms.append(_ms(start))
        shutil.rmtree(cache, ignore_errors=True)
    return m


def stages(source: Path, reps: int) -> list[Measurement]:
    """The steps of build_preview, timed one by one (files written to a scratch directory)."""
    names = ["probe_image", "read_plane", "auto_contrast (percentiles + histogram)",
             "bin to ≤1024 + 8-bit + PNG encode", "thumbnail bin + PNG encode",
             "full 8-bit plane + .npy write"]
    out = {name: Measurement(f"  stage: {name}") for name in names}
    scratch = Path(tempfile.mkdtemp(prefix="cryovault-bench-stage-"))
    try:
        for _ in range(reps):
            t = time.perf_counter()
            info = probe_image(source)
            out[names[0]].samples_ms.append(_ms(t))
            t = time.perf_counter()
            plane = read_plane(source, info, 0)
            out[names[1]].samples_ms.append(_ms(t))
            t = time.perf_counter()
            contrast = auto_contrast(plane)
            out[names[2]].samples_ms.append(_ms(t))
            t = time.perf_counter()
            factor = max(1, -(-max(plane.shape) // previews.PREVIEW_MAX_SIDE))
            preview = bin_mean(plane, factor)
            thumb_source = preview.copy()
            (scratch / "preview.png").write_bytes(
                png_bytes(to_u8(preview, contrast.lo, contrast.hi, in_place=True)))
            out[names[3]].samples_ms.append(_ms(t))
            t = time.perf_counter()
            extra = max(1, -(-max(thumb_source.shape) // previews.THUMB_MAX_SIDE))
            thumb = bin_mean(thumb_source, extra)
            (scratch / "thumb.png").write_bytes(
                png_bytes(to_u8(thumb, contrast.lo, contrast.hi, in_place=True)))
            out[names[4]].samples_ms.append(_ms(t))
            t = time.perf_counter()
            plane_u8 = to_u8(plane, contrast.lo, contrast.hi, in_place=True)
            np.save(scratch / "plane_u8.npy", plane_u8)
            out[names[5]].samples_ms.append(_ms(t))
            del plane, plane_u8
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return list(out.values())


def cached_call(source: Path, work: Path, reps: int) -> Measurement:
    cache = work / "cache-hit"
    info = probe_image(source)
    build_preview(source, cache, 0, info)
    m = Measurement(f"{source.suffix[1:].upper()} build_preview again (cache hit)")
    for _ in range(max(reps, 20)):
        start = time.perf_counter()
        assert build_preview(source, cache, 0, info).from_cache
        m.samples_ms.append(_ms(start))
    return m


def tiles(source: Path, work: Path, max_tiles: int) -> list[Measurement]:
    cache = work / "cache-tiles"
    shutil.rmtree(cache, ignore_errors=True)
    meta = build_preview(source, cache, 0, probe_image(source)).meta
    results: list[Measurement] = []
    cold_all = Measurement("tile, first request, all levels")
    for level in range(meta.max_level, -1, -1):
        columns, rows = meta.tile_grid(level)
        width, height = meta.level_size(level)
        m = Measurement(f"  tile, first request, level {level} ({width}×{height}, "
                        f"{columns}×{rows} tiles)")
        coordinates = [(c, r) for r in range(rows) for c in range(columns)][:max_tiles]
        for col, row in coordinates:
            start = time.perf_counter()
            tile_png(cache, 0, level, col, row)
            m.samples_ms.append(_ms(start))
        cold_all.samples_ms.extend(m.samples_ms)
        if level >= meta.max_level - 3 or level == 0:
            results.append(m)
    hit = Measurement("tile, cached (file read)")
    for _ in range(200):
        start = time.perf_counter()
        tile_png(cache, 0, meta.max_level, 0, 0)
        hit.samples_ms.append(_ms(start))
    return [cold_all, *results, hit]


def timed(label: str, action: Callable[[], None]) -> float:
    print(f"  {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def print_table(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(f"\ncryovault preview benchmark: {meta['size']}×{meta['size']} float32 MRC "
          f"({meta['mrc_mb']:.0f} MB), {meta['frames']}-frame EER ({meta['eer_mb']:.0f} MB, "
          f"{meta['events_per_frame']:,} events/frame); {meta['cpus']} CPUs, "
          f"{meta['reps']} reps; load average {meta['load_before']:.1f} → "
          f"{meta['load_after']:.1f}")
    header = f"{'measurement':<62}{'n':>5}{'median ms':>11}{'min':>9}{'max':>9}{'target':>9}" \
             "  result"
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        target = "< " + format(r["target_ms"], "g") if r["target_ms"] else ""
        result = "" if r["pass"] is None else ("pass" if r["pass"] else "FAIL")
        print(f"{r['name']:<62}{r['n']:>5}{r['median_ms']:>11.1f}{r['min_ms']:>9.1f}"
              f"{r['max_ms']:>9.1f}{target:>9}  {result}")
        if r["note"]:
            print(f"    {r['note']}")
    print(f"\nwall time {meta['wall_s']:.0f} s; JSON: {meta['json']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="image side in pixels")
    parser.add_argument("--frames", type=int, default=40, help="EER frames")
    parser.add_argument("--dose", type=float, default=0.02,
                        help="EER electrons per pixel per frame (default 0.02)")
    parser.add_argument("--reps", type=int, default=5, help="cold-cache builds per format")
    parser.add_argument("--max-tiles", type=int, default=64,
                        help="tiles timed per level (first requests)")
    parser.add_argument("--no-cold-disk", action="store_true",
                        help="skip the runs with the source evicted from the OS page cache")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to write the sample files (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the sample files")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cryovault-bench-previews-"))
    work.mkdir(parents=True, exist_ok=True)
    mrc_path = work / "micrograph.mrc"
    eer_path = work / "movie_EER.eer"
    load_before = os.getloadavg()[0]
    results: list[Measurement] = []
    try:
        print(f"sample files in {work}", file=sys.stderr)
        if not mrc_path.exists():
            seconds = timed(f"writing a {args.size}² float32 MRC",
                            lambda: make_mrc(mrc_path, args.size, args.seed))
            print(f"    {seconds:.1f} s", file=sys.stderr)
        if not eer_path.exists():
            seconds = timed(f"writing a {args.frames}-frame {args.size}² EER movie",
                            lambda: make_eer(eer_path, args.size, args.frames, args.dose,
                                             args.seed))
            print(f"    {seconds:.1f} s", file=sys.stderr)

        print("  measuring", file=sys.stderr, flush=True)
        probe_image(mrc_path)  # imports and first-touch out of the measurements
        warm = first_preview(mrc_path, work, args.reps, cold=False)
        warm.target_ms = FIRST_PREVIEW_TARGET_MS
        warm.note = ("probe_image + build_preview into a fresh cache directory: preview.png, "
                     "thumb.png, full 8-bit plane, meta.json")
        results.append(warm)
        results.extend(stages(mrc_path, args.reps))
        cold_ok = not args.no_cold_disk and hasattr(os, "posix_fadvise")
        if cold_ok:
            cold = first_preview(mrc_path, work, args.reps, cold=True)
            cold.target_ms = FIRST_PREVIEW_TARGET_MS
            cold.note = "the MRC evicted from the OS page cache before each run " \
                        "(posix_fadvise DONTNEED)"
            results.append(cold)
        results.append(cached_call(mrc_path, work, args.reps))

        eer_warm = first_preview(eer_path, work, args.reps, cold=False)
        eer_warm.note = (f"decode and sum {args.frames} frames (tifffile + imagecodecs, one "
                         "frame at a time), then as for the MRC")
        results.append(eer_warm)
        eer_info = probe_image(eer_path)
        read = Measurement(f"  stage: EER read_plane (sum of {args.frames} frames)")
        for _ in range(args.reps):
            start = time.perf_counter()
            read_plane(eer_path, eer_info, 0)
            read.samples_ms.append(_ms(start))
        read.note = f"{args.frames / (read.median_ms / 1000):.0f} frames/s"
        results.append(read)
        probe = Measurement("  stage: EER probe_image (headers of every frame)")
        for _ in range(max(args.reps, 10)):
            start = time.perf_counter()
            probe_image(eer_path)
            probe.samples_ms.append(_ms(start))
        results.append(probe)
        if cold_ok:
            eer_cold = first_preview(eer_path, work, args.reps, cold=True)
            results.append(eer_cold)

        results.extend(tiles(mrc_path, work, args.max_tiles))
        mrc_mb = mrc_path.stat().st_size / 1e6
        eer_mb = eer_path.stat().st_size / 1e6
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"  kept {work}", file=sys.stderr)

    report = {
        "meta": {
            "benchmark": "bench_previews",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "size": args.size, "frames": args.frames, "dose_per_frame": args.dose,
            "events_per_frame": int(args.dose * args.size * args.size),
            "mrc_mb": mrc_mb, "eer_mb": eer_mb, "reps": args.reps,
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "tile_size": previews.TILE_SIZE, "png_compress_level": previews.PNG_COMPRESS_LEVEL,
            "wall_s": time.perf_counter() - started, "json": str(args.json),
        },
        "results": [m.as_dict() for m in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0 if all(m.passed is not False for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
