"""Reading a simulation's `ground_truth.jsonl` back (tests, benchmarks, accuracy checks).

Each line is one JSON object with a "kind":

- EPU: "atlas" (grid squares with atlas pixel centres and stage µm), "session" (folders,
  EpuSession values, data-acquisition areas), "grid_square" (its holes in grid-square image
  pixels), "foil_hole", "acquisition" (per exposure: file paths relative to the visit — the
  movie relative to `movies_root` when set —, defocus_u/v_angstrom, astigmatism_angle_deg,
  target_defocus_angstrom, drift_px [[x, y] per frame: displacement of the content], pixel
  size, dose, stage, image shift, acquired_at);
- tomography: "tilt" (per tilt as written: shift_px, defocus, drift_px, bead_positions_px) and
  "tilt_series" (per finished position: tilt_angles_deg and shifts_px in acquisition order,
  acquisition_order, defocus per tilt at the image centre, handedness of the defocus gradient
  across a tilt (+1), tilt_axis_angle_deg, thickness_angstrom, beads_angstrom);
- "finished" when the run ended.
Lines are appended once an item's files exist, so the file can be read during a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GroundTruth:
    """The records of one run, by kind; acquisitions and tilt series by name."""

    session: dict | None = None
    atlas: dict | None = None
    grid_squares: dict[int, dict] = field(default_factory=dict)
    foil_holes: dict[int, dict] = field(default_factory=dict)
    acquisitions: dict[str, dict] = field(default_factory=dict)
    tilts: list[dict] = field(default_factory=list)
    tilt_series: dict[str, dict] = field(default_factory=dict)
    finished: dict | None = None


def load_ground_truth(path: Path) -> GroundTruth:
    """Read `ground_truth.jsonl`; a partly written last line (a run in progress) is ignored."""
    truth = GroundTruth()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = record.get("kind")
        if kind == "session":
            truth.session = record
        elif kind == "atlas":
            truth.atlas = record
        elif kind == "grid_square":
            truth.grid_squares[record["grid_square_id"]] = record
        elif kind == "foil_hole":
            truth.foil_holes[record["foil_hole_id"]] = record
        elif kind == "acquisition":
            truth.acquisitions[record["name"]] = record
        elif kind == "tilt":
            truth.tilts.append(record)
        elif kind == "tilt_series":
            truth.tilt_series[record["name"]] = record
        elif kind == "finished":
            truth.finished = record
    return truth
