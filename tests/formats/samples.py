"""Real-format sample files for the formats tests, written by the formats' own libraries
(mrcfile, tifffile, Pillow) or, for EER, by cryovault.formats.eer.write_eer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import tifffile
from PIL import Image

from cryovault.formats.eer import EerFrame, random_events, write_eer

FIXTURES = Path("/work/shared/fixtures")
STAR_FIXTURES = FIXTURES / "star"
EPU_JPEG = (FIXTURES / "epu/epu-dir-example/Images-Disc1/GridSquare_8999138/Data"
            / "FoilHole_9015883_Data_9017347_6_20250108_154915.jpg")


def micrograph(rng: np.random.Generator, height: int = 90, width: int = 120) -> np.ndarray:
    """A float32 image with structure (a gradient and a disc) plus noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width / 3) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 4) ** 2)
    image = 0.01 * x + 3.0 * disc + rng.normal(size=(height, width))
    return image.astype(np.float32)


def write_mrc(path: Path, data: np.ndarray, *, voxel: float | tuple[float, float, float] = 1.06,
              kind: str = "image") -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if kind == "volume":
            mrc.set_volume()
        elif kind == "stack":
            mrc.set_image_stack()
        mrc.voxel_size = voxel
    return path


@dataclass(frozen=True)
class EerSample:
    path: Path
    counts: np.ndarray  # the known sum of all frames, height × width
    n_frames: int


def write_eer_sample(path: Path, rng: np.random.Generator, *, width: int = 96, height: int = 64,
                     n_frames: int = 9, events: int = 400, compression: int = 65001,
                     integrated: bool = False) -> EerSample:
    frames: list[EerFrame] = [random_events(rng, width, height, events) for _ in range(n_frames)]
    counts = np.zeros(width * height, dtype=np.int64)
    for frame in frames:
        counts[frame.positions] += 1
    counts = counts.reshape(height, width)
    write_eer(path, frames, width=width, height=height, n_frames=n_frames,
              compression=compression,
              acquisition_metadata=[
                  ("acquisitionID", "2025-01-08_15.49.18", None),
                  ("commercialName", "Falcon 4i", None),
                  ("exposureTime", 2.5, "s"),
                  ("totalDose", 0.45, "e/pixel"),
                  ("meanDoseRate", 0.18, "e/pixel/s"),
                  ("sensorPixelSize.width", 1.4e-05, "m"),
                  ("sensorPixelSize.height", 1.4e-05, "m"),
              ],
              frame_dose=0.05,
              integrated=counts.astype(np.uint16) if integrated else None,
              rle_bits=7, horz_bits=1, vert_bits=1)
    return EerSample(path=path, counts=counts, n_frames=n_frames)


def write_tiff_frames(path: Path, frames: np.ndarray, **kwargs: object) -> Path:
    tifffile.imwrite(path, frames, photometric="minisblack", **kwargs)
    return path


def write_png(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path, format="PNG")
    return path


def write_jpeg(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path, format="JPEG", quality=95)
    return path


def truncate_copy(source: Path, target: Path, n_bytes: int) -> Path:
    target.write_bytes(source.read_bytes()[:n_bytes])
    return target
