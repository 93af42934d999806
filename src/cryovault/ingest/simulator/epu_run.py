"""Run a simulated EPU session into a visit folder, in EPU's order and at a given pace.

Order of writing (as EPU does it):
1. the atlas: `atlas/Supervisor_<date>_<time>_<name>_Atlas/Sample<slot>/Atlas/` tiles
   (`Tile_<id>_<i>_<atlasId>.jpg/.xml`), the stitched `Atlas_<id>.jpg/.xml`, then `Atlas.dm`;
2. the session folder `Supervisor_<date>_<time>_<nn>_<name>_EPU/`: `EpuSession.dm`, then one
   `Metadata/GridSquare_<id>.dm` per square of the grid (no targets yet);
3. per chosen square: its image `Images-Disc1/GridSquare_<id>/GridSquare_<date>_<time>.jpg/.xml`,
   its metadata rewritten with the foil-hole targets; per chosen hole its image
   `FoilHoles/FoilHole_<id>_<date>_<time>.jpg/.xml`, then its exposures, paced at `rate`:
   `Data/FoilHole_<hole>_Data_<area>_<n>_<date>_<time>.xml`, `.jpg`, the integrated `.mrc`
   (EpuSession ImageFileFormat Mrc) and the movie (`_fractions.tiff`, LZW, or `_EER.eer`) written
   in chunks — before the XML for about a third of them with `out_of_order`, and under
   `movies_root` (same sub-tree) when movies are offloaded; then the square's metadata is
   rewritten with the exposures (ParticleAcquisitions) and `EpuSession.dm` is rewritten.
Every item is logged to `ground_truth.jsonl` in the visit folder once its files exist.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cryovault.ingest.simulator.atlas_file import AtlasDescription, atlas_xml
from cryovault.ingest.simulator.epu_plan import (
    ATLAS_EDGE_PX,
    ATLAS_PIXEL_M,
    ATLAS_TILES,
    DATA_DOSE_E_PER_ANGSTROM2,
    DATA_EXPOSURE_TIME_S,
    DATA_PIXEL_ANGSTROM,
    DEFOCUS_LIST_M,
    FOIL_HOLE_EDGE_PX,
    FOIL_HOLE_PIXEL_M,
    GRID_SQUARE_EDGE_PX,
    GRID_SQUARE_PIXEL_M,
    STAGE_Z_M,
    Acquisition,
    AcquisitionArea,
    AtlasSquare,
    EpuOptions,
    FoilHole,
    IdSource,
    SquareVisit,
    acquisition_areas,
    atlas_squares,
    choose_holes,
    choose_squares,
    square_holes,
    true_defocus,
)
from cryovault.ingest.simulator.grid_square_file import SquareFileContext, grid_square_xml
from cryovault.ingest.simulator.images import (
    preview_jpeg_bytes,
    render_atlas,
    render_foil_hole,
    render_grid_square,
    write_mrc,
)
from cryovault.ingest.simulator.microscope_image import (
    EPU_VERSION,
    FALCON,
    K3,
    FoilHoleFinding,
    ImageSettings,
    Instrument,
    microscope_image_xml,
)
from cryovault.ingest.simulator.output import (
    Pacer,
    TruthLog,
    relative,
    write_file,
    write_growing,
)
from cryovault.ingest.simulator.session_file import SessionDescription, epu_session_xml

TRUTH_FILE = "ground_truth.jsonl"
MOVIE_CHUNKS = 4
MIN_SIMULATED_PX = 256


@dataclass(frozen=True)
class EpuRunResult:
    """Where the simulated session went."""

    visit: Path
    session_folder: Path
    atlas_folder: Path
    truth_path: Path
    acquisitions: int


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d_%H%M%S")


def _um(value_m: float) -> float:
    return round(value_m * 1e6, 6)


class _EpuRun:
    """One simulated session; `run()` writes everything."""

    def __init__(self, visit: Path, options: EpuOptions,
                 progress: Callable[[str], None]) -> None:
        self.visit = visit
        self.options = options
        self.progress = progress
        self.rng = np.random.default_rng(options.seed)
        self.ids = IdSource(self.rng)
        self.instrument: Instrument = FALCON if options.movie_format == "eer" else K3
        self.windows_root = f"Z:\\DoseFractions\\{visit.name}"
        self.pacer = Pacer(options.rate_per_s)
        self.truth = TruthLog(visit / TRUTH_FILE)
        self.movies_root = Path(options.movies_root) if options.movies_root else visit
        self.acquired = 0
        self.holes_visited = 0
        self.temp = Path(tempfile.mkdtemp(prefix="cryovault-sim-"))

    # -- settings of the image kinds --------------------------------------------------------

    def _overview(self, moment: datetime, pixel_m: float, edge: int, magnification: int,
                  stage: tuple[float, float], defocus_m: float, dose: float) -> ImageSettings:
        return ImageSettings(
            acquired_at=moment, pixel_size_m=pixel_m, width_px=edge, height_px=edge,
            exposure_time_s=1.0, dose_e_per_m2=dose * 1e20, applied_defocus_m=defocus_m,
            objective_defocus_m=defocus_m, nominal_magnification=magnification,
            stage_m_rad=(stage[0], stage[1], STAGE_Z_M, 0.0, 0.0),
            beam_diameter_m=edge * pixel_m * 1.5, low_magnification=magnification < 5000,
            slit_inserted=False)

    def _acquisition_settings(self, moment: datetime) -> ImageSettings:
        options = self.options
        return ImageSettings(
            acquired_at=moment, pixel_size_m=DATA_PIXEL_ANGSTROM * 1e-10,
            width_px=options.size_px, height_px=options.size_px,
            exposure_time_s=DATA_EXPOSURE_TIME_S,
            dose_e_per_m2=DATA_DOSE_E_PER_ANGSTROM2 * 1e20,
            applied_defocus_m=DEFOCUS_LIST_M[0], objective_defocus_m=DEFOCUS_LIST_M[0],
            nominal_magnification=130000, stage_m_rad=(0.0, 0.0, STAGE_Z_M, 0.0, 0.0),
            number_of_fractions=options.frames if options.write_movies else None)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> EpuRunResult:
        try:
            return self._run()
        finally:
            shutil.rmtree(self.temp, ignore_errors=True)

    def _run(self) -> EpuRunResult:
        options = self.options
        squares = atlas_squares(self.rng, self.ids)
        chosen_squares = choose_squares(squares, options.squares, self.rng)
        slot = int(self.rng.integers(0, 12))
        atlas_folder = self._write_atlas(squares, slot)
        started = _now()
        session_folder = self.visit / f"Supervisor_{_stamp(started)}_" \
                                      f"{int(self.rng.integers(10, 99))}_{options.name}_EPU"
        areas = acquisition_areas(options.acquisitions_per_hole, self.ids)
        atlas_windows = (f"{self.windows_root}\\atlas\\{atlas_folder.name}\\Sample{slot}"
                         "\\Atlas\\Atlas.dm")
        session = SessionDescription(
            session_id=self.ids.take(2), sample_id=self.ids.take(2),
            template_id=self.ids.take(), name=session_folder.name, started_at=started,
            autoloader_slot=slot, atlas_path_windows=atlas_windows,
            storage_root_windows=self.windows_root, image_file_format="Mrc",
            dose_fractions_format=(None if not options.write_movies else
                                   "EER" if options.movie_format == "eer"
                                   else "Tiff Lzw Non-Gain normalized"),
            grid_square_ids=tuple(s.grid_square_id for s in squares), areas=tuple(areas),
            defocus_list_m=DEFOCUS_LIST_M, exposure_time_s=DATA_EXPOSURE_TIME_S,
            presets=self._presets(started), instrument=self.instrument)
        write_file(session_folder / "EpuSession.dm", epu_session_xml(session))
        visits = {s.grid_square_id: SquareVisit(s, [], []) for s in squares}
        contexts = {s.grid_square_id: SquareFileContext(
            self.ids.take(), order,
            f"{self.windows_root}\\{session_folder.name}\\Images-Disc1\\"
            f"GridSquare_{s.grid_square_id}") for order, s in enumerate(squares)}
        for square in squares:
            self._write_square_metadata(session_folder, visits[square.grid_square_id],
                                        contexts[square.grid_square_id])
        self.truth.add("session", {
            "session_folder": relative(session_folder, self.visit),
            "atlas_folder": relative(atlas_folder, self.visit),
            "name": session_folder.name, "epu_version": EPU_VERSION,
            "started_at": started.isoformat(), "autoloader_slot": slot,
            "atlas_path_windows": atlas_windows, "storage_root_windows": self.windows_root,
            "image_file_format": "Mrc", "dose_fractions_format": session.dose_fractions_format,
            "movie_format": options.movie_format if options.write_movies else None,
            "movies_root": str(self.movies_root.resolve()) if options.movies_root else None,
            "grid_square_ids": [s.grid_square_id for s in squares],
            "chosen_grid_square_ids": [s.grid_square_id for s in chosen_squares],
            "data_acquisition_areas": [
                {"area_id": a.area_id, "setting_id": a.setting_id,
                 "shift_px": [a.shift_x_px, a.shift_y_px]} for a in areas],
            "defocus_list_angstrom": [-d * 1e10 for d in DEFOCUS_LIST_M],
            "frames": options.frames, "size_px": options.size_px,
            "pixel_size_angstrom": DATA_PIXEL_ANGSTROM,
            "microscope": self.instrument.model, "detector": self.instrument.commercial_name,
            "voltage_kv": self.instrument.voltage_v / 1000})
        for index, square in enumerate(chosen_squares, start=1):
            began = time.monotonic()
            visit = visits[square.grid_square_id]
            self._visit_square(session_folder, visit, contexts[square.grid_square_id], areas)
            write_file(session_folder / "EpuSession.dm", epu_session_xml(session))
            self.progress(f"grid square {index}/{len(chosen_squares)} GridSquare_"
                          f"{square.grid_square_id}: {len(visit.chosen)} holes, "
                          f"{len(visit.acquisitions)} exposures "
                          f"({time.monotonic() - began:.1f} s)")
        session = replace(session, ended_at=_now())
        write_file(session_folder / "EpuSession.dm", epu_session_xml(session))
        self.truth.add("finished", {"acquisitions": self.acquired,
                                    "finished_at": _now().isoformat()})
        return EpuRunResult(self.visit, session_folder, atlas_folder, self.truth.path,
                            self.acquired)

    def _presets(self, moment: datetime) -> tuple[tuple[str, ImageSettings], ...]:
        return (("Atlas", self._overview(moment, ATLAS_PIXEL_M, ATLAS_EDGE_PX, 135,
                                         (0.0, 0.0), -1e-03, 0.01)),
                ("GridSquare", self._overview(moment, GRID_SQUARE_PIXEL_M,
                                              GRID_SQUARE_EDGE_PX, 470, (0.0, 0.0), -5e-05,
                                              0.0004)),
                ("Hole", self._overview(moment, FOIL_HOLE_PIXEL_M, FOIL_HOLE_EDGE_PX, 11500,
                                        (0.0, 0.0), -2e-05, 0.86)),
                ("Acquisition", self._acquisition_settings(moment)))

    # -- atlas -------------------------------------------------------------------------------

    def _write_atlas(self, squares: list[AtlasSquare], slot: int) -> Path:
        started = _now()
        atlas_folder = self.visit / "atlas" / f"Supervisor_{_stamp(started)}_" \
                                              f"{self.options.name}_Atlas"
        folder = atlas_folder / f"Sample{slot}" / "Atlas"
        atlas = AtlasDescription(
            session_id=self.ids.take(), atlas_image_id=self.ids.take(),
            tile_ids=tuple(self.ids.take() for _ in range(ATLAS_TILES ** 2)),
            started_at=started, acquired_at=started, autoloader_slot=slot,
            storage_folder_windows=f"{self.windows_root}\\atlas\\{atlas_folder.name}"
                                   f"\\Sample{slot}",
            squares=tuple(squares))
        image = render_atlas(squares, self.rng)
        tile_px = ATLAS_EDGE_PX // ATLAS_TILES
        for index in range(ATLAS_TILES ** 2):
            column, row = index % ATLAS_TILES, index // ATLAS_TILES
            crop = image[row * tile_px:(row + 1) * tile_px,
                         column * tile_px:(column + 1) * tile_px]
            centre = ((column + 0.5) * tile_px - ATLAS_EDGE_PX / 2,
                      (row + 0.5) * tile_px - ATLAS_EDGE_PX / 2)
            settings = self._overview(_now(), ATLAS_PIXEL_M, tile_px, 135,
                                      (centre[0] * ATLAS_PIXEL_M, centre[1] * ATLAS_PIXEL_M),
                                      -1e-03, 0.01)
            write_file(folder / f"{atlas.tile_name(index)}.jpg", preview_jpeg_bytes(crop))
            write_file(folder / f"{atlas.tile_name(index)}.xml",
                       microscope_image_xml(settings, self.instrument))
        settings = self._overview(_now(), ATLAS_PIXEL_M, ATLAS_EDGE_PX, 135, (0.0, 0.0),
                                  -1e-03, 0.01)
        write_file(folder / f"{atlas.image_name}.jpg",
                   preview_jpeg_bytes(image, max_edge=ATLAS_EDGE_PX))
        write_file(folder / f"{atlas.image_name}.xml",
                   microscope_image_xml(settings, self.instrument))
        atlas = replace(atlas, acquired_at=_now())
        write_file(folder / "Atlas.dm", atlas_xml(atlas))
        self.truth.add("atlas", {
            "path": relative(folder / "Atlas.dm", self.visit),
            "image": relative(folder / f"{atlas.image_name}.jpg", self.visit),
            "image_xml": relative(folder / f"{atlas.image_name}.xml", self.visit),
            "tiles": [relative(folder / f"{atlas.tile_name(i)}.jpg", self.visit)
                      for i in range(ATLAS_TILES ** 2)],
            "atlas_id": atlas.session_id, "cassette_slot": slot,
            "pixel_size_angstrom": ATLAS_PIXEL_M * 1e10,
            "width_px": ATLAS_EDGE_PX, "height_px": ATLAS_EDGE_PX,
            "grid_squares": [{"grid_square_id": s.grid_square_id, "x_px": s.center_x_px,
                              "y_px": s.center_y_px, "size_px": s.size_px,
                              "stage_x_um": _um(s.stage_x_m), "stage_y_um": _um(s.stage_y_m),
                              "condition": s.condition} for s in squares]})
        return atlas_folder

    # -- squares and holes -------------------------------------------------------------------

    def _write_square_metadata(self, session_folder: Path, visit: SquareVisit,
                               context: SquareFileContext) -> None:
        write_file(session_folder / "Metadata" / f"GridSquare_{visit.square.grid_square_id}.dm",
                   grid_square_xml(visit, context))

    def _visit_square(self, session_folder: Path, visit: SquareVisit,
                      context: SquareFileContext, areas: list[AcquisitionArea]) -> None:
        square = visit.square
        visit.holes = square_holes(square, self.rng, self.ids)
        visit.chosen = choose_holes(visit.holes, self.options.holes, self.rng)
        folder = session_folder / "Images-Disc1" / f"GridSquare_{square.grid_square_id}"
        moment = _now()
        visit.image_name = f"GridSquare_{_stamp(moment)}"
        image = render_grid_square(visit.holes, self.rng)
        settings = self._overview(moment, GRID_SQUARE_PIXEL_M, GRID_SQUARE_EDGE_PX, 470,
                                  (square.stage_x_m, square.stage_y_m), -5e-05, 0.0004)
        write_file(folder / f"{visit.image_name}.jpg", preview_jpeg_bytes(image))
        write_file(folder / f"{visit.image_name}.xml",
                   microscope_image_xml(settings, self.instrument))
        visit.state = "InProgress"
        self._write_square_metadata(session_folder, visit, context)
        metadata = session_folder / "Metadata" / f"GridSquare_{square.grid_square_id}.dm"
        self.truth.add("grid_square", {
            "grid_square_id": square.grid_square_id,
            "metadata": relative(metadata, self.visit),
            "image": relative(folder / f"{visit.image_name}.jpg", self.visit),
            "image_xml": relative(folder / f"{visit.image_name}.xml", self.visit),
            "pixel_size_angstrom": GRID_SQUARE_PIXEL_M * 1e10,
            "stage_x_um": _um(square.stage_x_m), "stage_y_um": _um(square.stage_y_m),
            "foil_holes": [{"foil_hole_id": h.foil_hole_id, "x_px": h.x_px, "y_px": h.y_px,
                            "diameter_px": h.diameter_px, "stage_x_um": _um(h.stage_x_m),
                            "stage_y_um": _um(h.stage_y_m), "near_grid_bar": h.near_grid_bar}
                           for h in visit.holes],
            "chosen_foil_hole_ids": [h.foil_hole_id for h in visit.chosen]})
        for hole in visit.chosen:
            self._visit_hole(folder, visit, hole, areas)
        visit.state = "Completed"
        self._write_square_metadata(session_folder, visit, context)

    def _visit_hole(self, folder: Path, visit: SquareVisit, hole: FoilHole,
                    areas: list[AcquisitionArea]) -> None:
        moment = _now()
        name = f"FoilHole_{hole.foil_hole_id}_{_stamp(moment)}"
        visit.foil_hole_images[hole.foil_hole_id] = name
        offset = (float(self.rng.normal(0, 6)), float(self.rng.normal(0, 6)))
        image = render_foil_hole(hole, offset, self.rng)
        diameter_px = hole.diameter_px * GRID_SQUARE_PIXEL_M / FOIL_HOLE_PIXEL_M
        finding = FoilHoleFinding(FOIL_HOLE_EDGE_PX / 2 + offset[0],
                                  FOIL_HOLE_EDGE_PX / 2 + offset[1], diameter_px)
        settings = replace(self._overview(moment, FOIL_HOLE_PIXEL_M, FOIL_HOLE_EDGE_PX, 11500,
                                          (hole.stage_x_m, hole.stage_y_m), -2e-05, 0.86),
                           foil_hole=finding, exposure_time_s=1.0)
        write_file(folder / "FoilHoles" / f"{name}.jpg", preview_jpeg_bytes(image))
        write_file(folder / "FoilHoles" / f"{name}.xml",
                   microscope_image_xml(settings, self.instrument))
        self.truth.add("foil_hole", {
            "foil_hole_id": hole.foil_hole_id, "grid_square_id": visit.square.grid_square_id,
            "image": relative(folder / "FoilHoles" / f"{name}.jpg", self.visit),
            "image_xml": relative(folder / "FoilHoles" / f"{name}.xml", self.visit),
            "center_px": [finding.center_x_px, finding.center_y_px],
            "diameter_px": diameter_px, "pixel_size_angstrom": FOIL_HOLE_PIXEL_M * 1e10})
        target = DEFOCUS_LIST_M[self.holes_visited % len(DEFOCUS_LIST_M)]
        hole_tag = int(self.rng.integers(0, 45))
        self.holes_visited += 1
        for area in areas:
            self.pacer.wait(self.acquired)
            self._acquire(folder / "Data", visit, hole, area, target, hole_tag)
            self.acquired += 1

    # -- exposures ---------------------------------------------------------------------------

    def _acquire(self, folder: Path, visit: SquareVisit, hole: FoilHole, area: AcquisitionArea,
                 target_m: float, hole_tag: int) -> None:
        from cryovault.science.ctf import CtfParameters
        from cryovault.science.simulate import simulate_movie, write_eer_movie, write_tiff_movie

        options = self.options
        moment = _now()
        name = f"FoilHole_{hole.foil_hole_id}_Data_{area.area_id}_{hole_tag}_{_stamp(moment)}"
        defocus_u, defocus_v, angle = true_defocus(target_m, self.rng)
        seed = int(self.rng.integers(0, 2**31 - 1))
        # simulated on at least 256 px (the specimen model needs the room) and cropped
        simulated_px = max(options.size_px, MIN_SIMULATED_PX)
        movie = simulate_movie(
            (simulated_px, simulated_px), options.frames,
            pixel_size_angstrom=DATA_PIXEL_ANGSTROM,
            dose_per_frame=DATA_DOSE_E_PER_ANGSTROM2 / options.frames,
            ctf=CtfParameters(defocus_u, defocus_v, angle,
                              voltage_kv=self.instrument.voltage_v / 1000), seed=seed)
        if simulated_px > options.size_px:
            start = (simulated_px - options.size_px) // 2
            stop = start + options.size_px
            movie = replace(movie, frames=np.ascontiguousarray(
                movie.frames[:, start:stop, start:stop]))
        offset_m = (area.shift_x_px * FOIL_HOLE_PIXEL_M, area.shift_y_px * FOIL_HOLE_PIXEL_M)
        image_shift = (round(offset_m[0] * 1e6, 6), round(offset_m[1] * 1e6, 6))
        settings = replace(self._acquisition_settings(moment), applied_defocus_m=target_m,
                           objective_defocus_m=target_m + 4.6e-07,
                           stage_m_rad=(hole.stage_x_m, hole.stage_y_m, STAGE_Z_M, 0.0, 0.0),
                           image_shift=image_shift,
                           beam_shift=(image_shift[0] * 0.11, image_shift[1] * 0.11))
        before_xml = bool(options.out_of_order and self.rng.random() < 0.4)
        integrated = movie.frames.sum(axis=0, dtype=np.float32)
        movie_path = None
        if options.write_movies:
            suffix = "_EER.eer" if options.movie_format == "eer" else "_fractions.tiff"
            movie_path = (self.movies_root / folder.relative_to(self.visit)
                          / f"{name}{suffix}")

        def write_movie() -> None:
            assert movie_path is not None
            staged = self.temp / movie_path.name
            if options.movie_format == "eer":
                write_eer_movie(staged, movie,
                                eer_frames_per_fraction=options.eer_frames_per_fraction,
                                seed=seed)
            else:
                write_tiff_movie(staged, movie.frames)
            write_growing(movie_path, staged, MOVIE_CHUNKS,
                          self.pacer.chunk_pause_s(MOVIE_CHUNKS))
            staged.unlink()

        if movie_path is not None and before_xml:
            write_movie()
        write_file(folder / f"{name}.xml", microscope_image_xml(settings, self.instrument))
        write_file(folder / f"{name}.jpg", preview_jpeg_bytes(integrated))
        write_mrc(folder / f"{name}.mrc", integrated, DATA_PIXEL_ANGSTROM)
        if movie_path is not None and not before_xml:
            write_movie()
        acquisition = Acquisition(
            name=name, grid_square_id=visit.square.grid_square_id,
            foil_hole_id=hole.foil_hole_id, area=area, acquired_at=moment,
            target_defocus_m=target_m, defocus_u_angstrom=defocus_u,
            defocus_v_angstrom=defocus_v, astigmatism_angle_deg=angle,
            stage_x_m=hole.stage_x_m, stage_y_m=hole.stage_y_m, image_shift=image_shift,
            particle_acquisition_id=self.ids.take(), movie_before_xml=before_xml)
        visit.acquisitions.append(acquisition)
        drift = movie.truth.drift_px
        self.truth.add("acquisition", {
            "name": name, "grid_square_id": visit.square.grid_square_id,
            "foil_hole_id": hole.foil_hole_id, "data_acquisition_area_id": area.area_id,
            "xml": relative(folder / f"{name}.xml", self.visit),
            "jpg": relative(folder / f"{name}.jpg", self.visit),
            "integrated": relative(folder / f"{name}.mrc", self.visit),
            "movie": (relative(movie_path, self.movies_root) if movie_path else None),
            "movie_written_before_xml": before_xml and movie_path is not None,
            "acquired_at": moment.isoformat(),
            "pixel_size_angstrom": DATA_PIXEL_ANGSTROM,
            "defocus_u_angstrom": defocus_u, "defocus_v_angstrom": defocus_v,
            "astigmatism_angle_deg": angle, "target_defocus_angstrom": -target_m * 1e10,
            "drift_px": [[round(float(x), 4), round(float(y), 4)] for x, y in drift],
            "total_drift_px": round(float(math.fsum(np.hypot(*np.diff(drift, axis=0).T))), 4),
            "dose_e_per_angstrom2": DATA_DOSE_E_PER_ANGSTROM2,
            "exposure_time_s": DATA_EXPOSURE_TIME_S, "frames": options.frames,
            "eer_frames_per_fraction": (options.eer_frames_per_fraction
                                        if options.movie_format == "eer" else None),
            "size_px": options.size_px,
            "stage_x_um": _um(hole.stage_x_m), "stage_y_um": _um(hole.stage_y_m),
            "stage_z_um": _um(STAGE_Z_M), "image_shift": list(image_shift),
            "voltage_kv": self.instrument.voltage_v / 1000,
            "microscope": self.instrument.model, "detector": self.instrument.commercial_name})


def simulate_epu(visit: Path, options: EpuOptions,
                 progress: Callable[[str], None] = lambda line: None) -> EpuRunResult:
    """Write a simulated EPU visit (atlas + one session) into `visit`."""
    visit.mkdir(parents=True, exist_ok=True)
    return _EpuRun(visit, options, progress).run()
