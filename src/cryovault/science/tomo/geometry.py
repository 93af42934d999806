"""Geometry of a tilt series (DESIGN.md "Conventions of geometry"), shared by the simulator,
the alignment and the reconstruction.

Coordinates are in pixels. A specimen point p = (x, y, z) is relative to the centre of the
volume; image coordinates are relative to the image centre c = ((nx − 1) / 2, (ny − 1) / 2),
the centre of the first pixel being (0, 0) in array terms.

Forward model of tilt i (what the microscope records):

    (u, v) = (x cos θ_i + z sin θ_i, y)        projection at tilt θ_i, axis along +y
    r_i    = m_i R(φ + δ_i) (u, v) + s_i       in the raw image, relative to c

with φ the tilt-axis angle (counter-clockwise from +y, IMOD's rotation angle), δ_i a per-tilt
rotation error, m_i a magnification and s_i = [x, y] a shift. R(a) is the counter-clockwise
rotation [[cos a, −sin a], [sin a, cos a]], so the axis direction is R(φ)(0, 1) = (−sin φ, cos φ).

Alignment inverts it: the aligned image has the tilt axis along +y, and (IMOD .xf)

    a_i = A_i r_i + d_i,   A_i = R(−(φ + δ_i)) / m_i,   d_i = −A_i s_i

maps raw to aligned coordinates (both relative to the image centre). An .xf line is
"A11 A12 A21 A22 DX DY". The reconstruction's origin is a gauge: moving it by (x0, y0, z0)
shifts tilt i in the aligned frame by (x0 cos θ_i + z0 sin θ_i, y0), so shift errors are
measured after removing that (`gauge_residual_px`).
"""

from __future__ import annotations

import math

import numpy as np


def rotation_matrix(angle_degrees: float) -> np.ndarray:
    """R(a): counter-clockwise rotation by `angle_degrees` of [x, y] column vectors."""
    a = math.radians(angle_degrees)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def image_centre(shape: tuple[int, int]) -> np.ndarray:
    """[x, y] of the centre of an image of `shape` (ny, nx) in array coordinates."""
    ny, nx = shape
    return np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])


def project_points(points: np.ndarray, tilt_degrees: float) -> np.ndarray:
    """(u, v) of specimen points (N, 3) [x, y, z] at tilt θ, tilt axis along +y."""
    t = math.radians(tilt_degrees)
    return np.stack([points[:, 0] * math.cos(t) + points[:, 2] * math.sin(t), points[:, 1]],
                    axis=1)


def forward_matrix(axis_degrees: float, magnification: float = 1.0) -> np.ndarray:
    """m R(φ): from the axis-vertical frame (u, v) to the raw image."""
    return magnification * rotation_matrix(axis_degrees)


def xf_from_forward(axis_degrees: float, magnification: float,
                    shift_px: np.ndarray) -> np.ndarray:
    """The IMOD .xf row [A11, A12, A21, A22, DX, DY] that aligns a tilt recorded through
    r = m R(φ) (u, v) + s (φ here includes the per-tilt rotation error)."""
    a = rotation_matrix(-axis_degrees) / magnification
    d = -a @ np.asarray(shift_px, dtype=float)
    return np.array([a[0, 0], a[0, 1], a[1, 0], a[1, 1], d[0], d[1]])


def forward_from_xf(xf: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(φ, m, s) of an .xf row: the inverse of `xf_from_forward` (A must be a scaled rotation)."""
    a = np.array([[xf[0], xf[1]], [xf[2], xf[3]]])
    d = np.array([xf[4], xf[5]])
    scale = math.sqrt(abs(np.linalg.det(a)))
    axis = -math.degrees(math.atan2(a[1, 0], a[0, 0]))
    return axis, 1.0 / scale, -np.linalg.solve(a, d)


def gauge_residual_px(tilts_degrees: np.ndarray, errors_px: np.ndarray) -> np.ndarray:
    """Per-tilt [x, y] errors (in the aligned frame) after removing what a shift of the
    reconstruction's origin explains: x0 cos θ + z0 sin θ along x and y0 along y (least squares).
    """
    t = np.radians(np.asarray(tilts_degrees, dtype=float))
    err = np.asarray(errors_px, dtype=float)
    design = np.stack([np.cos(t), np.sin(t)], axis=1)
    coef, *_ = np.linalg.lstsq(design, err[:, 0], rcond=None)
    out = err.copy()
    out[:, 0] -= design @ coef
    out[:, 1] -= err[:, 1].mean()
    return out


def axis_normal(axis_degrees: float) -> np.ndarray:
    """Unit vector in the raw image perpendicular to the tilt axis, R(φ)(1, 0): the direction
    in which height changes on a tilted specimen."""
    a = math.radians(axis_degrees)
    return np.array([math.cos(a), math.sin(a)])


class TiltAlignment:
    """The alignment of a series in the forward model of this module: true tilt angles (stage
    angles plus the Y tilt correction), the global tilt-axis angle φ, per-tilt rotation errors
    δ_i, magnifications m_i and shifts s_i ([x, y] pixels at bin 1). Arrays are per kept tilt."""

    def __init__(self, angles_degrees: np.ndarray, axis_degrees: float,
                 shifts_px: np.ndarray | None = None, rotations_degrees: np.ndarray | None = None,
                 magnifications: np.ndarray | None = None) -> None:
        self.angles_degrees = np.asarray(angles_degrees, dtype=float).copy()
        n = len(self.angles_degrees)
        self.axis_degrees = float(axis_degrees)
        self.shifts_px = (np.zeros((n, 2)) if shifts_px is None
                          else np.asarray(shifts_px, dtype=float).reshape(n, 2).copy())
        self.rotations_degrees = (np.zeros(n) if rotations_degrees is None
                                  else np.asarray(rotations_degrees, dtype=float).copy())
        self.magnifications = (np.ones(n) if magnifications is None
                               else np.asarray(magnifications, dtype=float).copy())

    def __len__(self) -> int:
        return len(self.angles_degrees)

    def copy(self) -> TiltAlignment:
        return TiltAlignment(self.angles_degrees, self.axis_degrees, self.shifts_px,
                             self.rotations_degrees, self.magnifications)

    def xf(self) -> np.ndarray:
        """(n, 6) IMOD .xf rows at bin 1."""
        return np.stack([xf_from_forward(self.axis_degrees + self.rotations_degrees[i],
                                         self.magnifications[i], self.shifts_px[i])
                         for i in range(len(self))])

    def forward(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(M, s) of tilt `index`: raw r = M (u, v) + s (pixels at bin 1, centre-relative)."""
        m = forward_matrix(self.axis_degrees + self.rotations_degrees[index],
                           self.magnifications[index])
        return m, self.shifts_px[index]
