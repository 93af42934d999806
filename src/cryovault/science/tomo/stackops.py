"""Operations on whole images of a tilt series: binning and warping into the aligned frame.

Binning by b averages b × b blocks (the image is first cropped to a multiple of b, keeping the
centre); coordinates relative to the image centre scale exactly by 1 / b, so a shift of s pixels
at bin 1 is s / b at bin b. Warping uses the IMOD .xf convention of geometry.py.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryovault.science.tomo.geometry import image_centre


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of `factor` × `factor` blocks of a 2-D image (float32)."""
    if factor <= 1:
        return np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    by, bx = ny // factor, nx // factor
    y0, x0 = (ny - by * factor) // 2, (nx - bx * factor) // 2
    crop = np.asarray(image[y0:y0 + by * factor, x0:x0 + bx * factor], dtype=np.float32)
    return crop.reshape(by, factor, bx, factor).mean(axis=(1, 3), dtype=np.float32)


def bin_stack(stack: np.ndarray, factor: int) -> np.ndarray:
    """`bin_image` of every section of a (n, ny, nx) stack."""
    return np.stack([bin_image(s, factor) for s in stack])


def warp_image(image: np.ndarray, xf_row: np.ndarray, *, binning: int = 1,
               out_shape: tuple[int, int] | None = None, order: int = 1,
               fill: float | None = None) -> np.ndarray:
    """The image seen through an .xf row given at bin 1 (a = A r + d, centre-relative),
    for an `image` binned by `binning`. Outside the raw image: `fill` (default: its mean)."""
    a = np.array([[xf_row[0], xf_row[1]], [xf_row[2], xf_row[3]]])
    d = np.array([xf_row[4], xf_row[5]]) / binning
    out_shape = out_shape or image.shape
    c_in, c_out = image_centre(image.shape), image_centre(out_shape)
    inv = np.linalg.inv(a)
    # r = c_in + A⁻¹ (o − c_out − d), in (y, x) index order for ndimage
    matrix_xy = inv
    offset_xy = c_in - inv @ (c_out + d)
    swap = np.array([[0, 1], [1, 0]])
    matrix = swap @ matrix_xy @ swap
    offset = offset_xy[::-1]
    cval = float(np.mean(image)) if fill is None else fill
    return ndimage.affine_transform(np.asarray(image, dtype=np.float32), matrix, offset=offset,
                                    output_shape=out_shape, order=order, cval=cval,
                                    prefilter=order > 1)


def taper_edges(image: np.ndarray, width: int) -> np.ndarray:
    """The image with its mean-subtracted values brought to 0 over `width` pixels at the borders
    (a cosine ramp), against edge artefacts in Fourier transforms."""
    ny, nx = image.shape
    out = np.asarray(image, dtype=np.float32) - float(np.mean(image))

    def ramp(n: int) -> np.ndarray:
        r = np.ones(n, dtype=np.float32)
        w = min(width, n // 2)
        if w > 0:
            t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(w) + 0.5) / w)
            r[:w] = t
            r[n - w:] = t[::-1]
        return r

    return out * ramp(ny)[:, None] * ramp(nx)[None, :]
