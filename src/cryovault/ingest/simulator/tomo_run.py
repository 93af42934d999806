"""Run simulated Tomography 5 tilt series into a folder, one position after another.

Per position `Position_<n>`, tilts are acquired in the scheme's order (dose-symmetric: 0, +s,
−s, −2s, +2s, +3s, −3s … in groups of two as Tomography 5 does; sequential: lowest to highest
angle), paced at `rate` tilts per second. Each tilt's movie is written (in chunks, so that it
grows) as Tomography 5 names it: `Position_<n>_<NNN>_<angle>_<YYYYMMDD>_<HHMMSS>_fractions.tiff`
(or `_EER.eer`), NNN = 1-based acquisition index, angle with two decimals.

Tomography 5 writes `Position_<n>.mdoc` once, when the series is finished (readers such as
murfey take its number of `[ZValue]` sections as the length of the series when it appears), so
the simulator writes the .mdoc after the last tilt of the position, in one piece.

The movies are projections of a specimen (phantom.py: the blobs, projection, CTF and slab
transmission of `cryovault.science.tomo.simulate`, plus gold beads) with the documented
geometry; the truth (`ground_truth.jsonl`: one "tilt" line per tilt as it is written, one
"tilt_series" line per finished position) gives angles, acquisition order, per-tilt shifts
[x, y] px (content displacement: a specimen point that would project to p appears at
p + shift), defocus per tilt at the image centre (it varies across a tilted image with the
handedness recorded, +1), movie drift, slab thickness and the 3D bead positions.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cryovault.ingest.simulator.mdoc_file import MdocHeader, MdocTilt, mdoc_text
from cryovault.ingest.simulator.output import Pacer, TruthLog, write_file, write_growing
from cryovault.ingest.simulator.phantom import (
    HANDEDNESS,
    bead_positions_px,
    make_specimen,
    movie_frames,
    tilt_image,
)
from cryovault.science.ctf_model import CtfParameters

TRUTH_FILE = "ground_truth.jsonl"
MOVIE_CHUNKS = 4
TOMO_FIELD_ANGSTROM = 8192.0  # the field of view; the pixel size is field / --size
COUNTS_PER_PIXEL_PER_TILT = 40.0  # as a counting camera at 4 Å/px and 2.5 e⁻/Å² per tilt
EXPOSURE_TIME_S = 0.6
VOLTAGE_KV = 300.0
MICROSCOPE = "TITAN52330001"


@dataclass(frozen=True)
class TomoOptions:
    """The simulator's knobs (the `cryovault simulate tomo` options)."""

    positions: int = 1
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 3.0
    rate_per_s: float = 0.5
    movie_format: str = "tiff"
    frames: int = 8
    size_px: int = 512
    seed: int = 0
    scheme: str = "dose-symmetric"  # or "sequential"
    tilt_axis_deg: float = 85.0
    eer_frames_per_fraction: int = 10

    @property
    def pixel_size_angstrom(self) -> float:
        """The field of view stays 8192 Å (thick specimen, beads in view at high tilt)."""
        return round(TOMO_FIELD_ANGSTROM / self.size_px, 4)

    @property
    def dose_per_tilt_e_per_angstrom2(self) -> float:
        """40 counts per pixel and tilt, whatever the pixel size (EER and TIFF stay small)."""
        return round(COUNTS_PER_PIXEL_PER_TILT / self.pixel_size_angstrom ** 2, 6)

    def angles(self) -> list[float]:
        """The tilt angles, ascending."""
        count = int(round((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg)) + 1
        return [round(self.tilt_min_deg + i * self.tilt_step_deg, 6) for i in range(count)]


@dataclass(frozen=True)
class TomoRunResult:
    folder: Path
    truth_path: Path
    mdocs: tuple[Path, ...]
    tilts: int


def acquisition_order(angles: list[float], scheme: str) -> list[float]:
    """Angles in the order they are acquired."""
    ordered = sorted(angles)
    if scheme == "sequential":
        return ordered
    start = min(ordered, key=lambda a: (abs(a), a < 0))
    positive = [a for a in ordered if a > start]
    negative = [a for a in reversed(ordered) if a < start]
    order = [start]
    if positive:
        order.append(positive.pop(0))
    side = negative
    while positive or negative:
        for _ in range(2):
            if side:
                order.append(side.pop(0))
        side = positive if side is negative else negative
        if not side:
            side = positive or negative
    return order


def _now() -> datetime:
    return datetime.now(UTC)


class _TomoRun:
    def __init__(self, folder: Path, options: TomoOptions,
                 progress: Callable[[str], None]) -> None:
        self.folder = folder
        self.options = options
        self.progress = progress
        self.rng = np.random.default_rng(options.seed)
        self.pacer = Pacer(options.rate_per_s)
        self.truth = TruthLog(folder / TRUTH_FILE)
        self.windows_folder = f"X:\\Tomo5\\{folder.name}"
        self.acquired = 0
        self.temp = Path(tempfile.mkdtemp(prefix="cryovault-sim-"))

    def run(self) -> TomoRunResult:
        try:
            mdocs = tuple(self._position(index) for index in
                          range(1, self.options.positions + 1))
        finally:
            shutil.rmtree(self.temp, ignore_errors=True)
        self.truth.add("finished", {"tilts": self.acquired, "finished_at": _now().isoformat()})
        return TomoRunResult(self.folder, self.truth.path, mdocs, self.acquired)

    def _position(self, index: int) -> Path:
        from cryovault.science.simulate import MotionModel, simulate_trajectory

        options = self.options
        rng = self.rng
        name = f"Position_{index}"
        began = time.monotonic()
        size = options.size_px
        pixel = options.pixel_size_angstrom
        angles = acquisition_order(options.angles(), options.scheme)
        specimen = make_specimen(size, pixel, angles, rng)
        stage = (float(rng.uniform(-500, 500)), float(rng.uniform(-500, 500)),
                 float(rng.uniform(-50, 50)))
        target_um = -float(rng.choice([2.5, 3.0, 3.5, 4.0]))
        astigmatism = float(rng.uniform(100.0, 400.0))
        astigmatism_angle = float(rng.uniform(-90.0, 90.0))
        motion = MotionModel(initial_jump_px=1.5, drift_px_per_frame=0.1, jitter_px=0.03)
        shift = np.zeros(2)
        started = _now()
        tilts: list[MdocTilt] = []
        records: list[dict[str, object]] = []
        prior_dose = 0.0
        dose = options.dose_per_tilt_e_per_angstrom2
        counts_per_frame = COUNTS_PER_PIXEL_PER_TILT / options.frames
        for number, angle in enumerate(angles, start=1):
            self.pacer.wait(self.acquired)
            moment = _now()
            if number > 1:
                shift = shift + rng.normal(0.0, 1.5, size=2)
            mean_defocus = -target_um * 1e4 + float(rng.normal(0.0, 150.0))
            defocus_u = mean_defocus + astigmatism / 2
            defocus_v = mean_defocus - astigmatism / 2
            shift_px = (float(shift[0]), float(shift[1]))
            ctf = CtfParameters(defocus_u, defocus_v, astigmatism_angle, voltage_kv=VOLTAGE_KV)
            image = tilt_image(specimen, angle, options.tilt_axis_deg, size, pixel, shift_px,
                               ctf, rng)
            drift = simulate_trajectory(options.frames, rng, motion)
            frames = movie_frames(image, drift, counts_per_frame, rng)
            suffix = "_EER.eer" if options.movie_format == "eer" else "_fractions.tiff"
            movie_name = f"{name}_{number:03d}_{angle:.2f}_{moment:%Y%m%d_%H%M%S}{suffix}"
            self._write_movie(self.folder / movie_name, frames, drift)
            integrated = frames.sum(axis=0, dtype=np.float64)
            eer = options.movie_format == "eer"
            tilts.append(MdocTilt(
                tilt_angle_deg=angle, stage_x_um=stage[0], stage_y_um=stage[1],
                stage_z_um=stage[2], exposure_dose=dose,
                defocus_um=-mean_defocus / 1e4, target_defocus_um=target_um,
                image_shift=(shift_px[0] * pixel / 1e4,
                             shift_px[1] * pixel / 1e4),
                exposure_time_s=EXPOSURE_TIME_S,
                min_max_mean=(float(integrated.min()), float(integrated.max()),
                              float(integrated.mean())),
                prior_record_dose=prior_dose,
                sub_frame_path=f"{self.windows_folder}\\{movie_name}",
                num_sub_frames=1 if eer else options.frames,
                frame_dose=(dose if eer else
                            dose / options.frames),
                frames_in_file=1 if eer else options.frames, acquired_at=moment))
            prior_dose += dose
            record = {
                "tilt_series": name, "acquisition_index": number - 1, "tilt_angle_deg": angle,
                "movie": movie_name, "acquired_at": moment.isoformat(),
                "shift_px": [round(shift_px[0], 4), round(shift_px[1], 4)],
                "defocus_u_angstrom": defocus_u, "defocus_v_angstrom": defocus_v,
                "defocus_angstrom": mean_defocus, "astigmatism_angle_deg": astigmatism_angle,
                "drift_px": [[round(float(x), 4), round(float(y), 4)] for x, y in drift],
                "frames": options.frames,
                "eer_frames_per_fraction": options.eer_frames_per_fraction if eer else None,
                "bead_positions_px": [[round(x, 3), round(y, 3)] for x, y in bead_positions_px(
                    specimen, angle, options.tilt_axis_deg, size, pixel,
                    shift_px)]}
            records.append(record)
            self.truth.add("tilt", record)
            self.acquired += 1
        header = MdocHeader(image_size=(size, size), image_file=f"{name}.mrc",
                            pixel_spacing_angstrom=pixel, voltage_kv=VOLTAGE_KV,
                            microscope=MICROSCOPE, tilt_axis_angle_deg=options.tilt_axis_deg,
                            started_at=started)
        mdoc = self.folder / f"{name}.mdoc"
        write_file(mdoc, mdoc_text(header, tilts))
        by_angle = sorted(range(len(angles)), key=lambda i: angles[i])
        self.truth.add("tilt_series", {
            "name": name, "mdoc": mdoc.name, "scheme": options.scheme,
            "tilt_axis_angle_deg": options.tilt_axis_deg,
            "pixel_size_angstrom": pixel, "size_px": size,
            "voltage_kv": VOLTAGE_KV, "microscope": MICROSCOPE,
            "thickness_angstrom": specimen.thickness_angstrom,
            "handedness": HANDEDNESS,
            "tilt_angles_deg": angles,
            "acquisition_order": by_angle,
            "shifts_px": [r["shift_px"] for r in records],
            "defocus_angstrom": [r["defocus_angstrom"] for r in records],
            "defocus_u_angstrom": [r["defocus_u_angstrom"] for r in records],
            "defocus_v_angstrom": [r["defocus_v_angstrom"] for r in records],
            "astigmatism_angle_deg": astigmatism_angle,
            "target_defocus_angstrom": -target_um * 1e4,
            "dose_per_tilt_e_per_angstrom2": dose,
            "frames": options.frames, "movies": [r["movie"] for r in records],
            "stage_um": list(stage),
            "beads_angstrom": specimen.beads.centres.tolist()})
        self.progress(f"{name}: {len(angles)} tilts ({options.scheme}, "
                      f"{angles[0]:.0f}° first) in {time.monotonic() - began:.1f} s")
        return mdoc

    def _write_movie(self, path: Path, frames: np.ndarray, drift: np.ndarray) -> None:
        from cryovault.science.simulate import (
            MovieTruth,
            SimulatedMovie,
            write_eer_movie,
            write_tiff_movie,
        )

        staged = self.temp / path.name
        if self.options.movie_format == "eer":
            n, ny, nx = frames.shape
            movie = SimulatedMovie(frames, self.options.pixel_size_angstrom,
                                   self.options.dose_per_tilt_e_per_angstrom2 / n,
                                   MovieTruth((ny, nx), drift, np.zeros((2, 3)), np.zeros(n)),
                                   CtfParameters(30000.0, 30000.0))
            write_eer_movie(staged, movie,
                            eer_frames_per_fraction=self.options.eer_frames_per_fraction,
                            seed=int(self.rng.integers(0, 2**31 - 1)))
        else:
            write_tiff_movie(staged, frames)
        write_growing(path, staged, MOVIE_CHUNKS, self.pacer.chunk_pause_s(MOVIE_CHUNKS))
        staged.unlink()


def simulate_tomo(folder: Path, options: TomoOptions,
                  progress: Callable[[str], None] = lambda line: None) -> TomoRunResult:
    """Write simulated Tomography 5 tilt series (movies + .mdoc per position) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return _TomoRun(folder, options, progress).run()
