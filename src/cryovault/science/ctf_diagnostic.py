"""The CTFFIND-style diagnostic image of a CTF fit (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cryovault.science.ctf_model import ctf_phase

if TYPE_CHECKING:
    from cryovault.science.ctf import CtfResult


def write_diagnostic_png(result: CtfResult, path: Path) -> None:
    """CTFFIND-style diagnostic: the spectrum with the fitted CTF² in its right half, and
    below it the 1-D equiphase average (black), the fit (red) and the windowed correlation
    (blue), with the confidence resolution marked (green)."""
    from PIL import Image, ImageDraw

    spec = np.asarray(result.spectrum, dtype=np.float64)
    t = spec.shape[0]
    params = result.parameters
    k = (np.arange(t) - t // 2) / (t * result.pixel_size_angstrom)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    model = np.sin(ctf_phase(params, kx, ky)) ** 2
    g = np.sqrt(kx**2 + ky**2)
    smooth = ndimage.gaussian_filter(spec, 1.0)
    lo, hi = np.percentile(smooth[g > 1.0 / result.search.low_resolution_angstrom], [2, 98])
    data8 = np.clip((smooth - lo) / max(hi - lo, 1e-12), 0, 1)
    panel = data8.copy()
    panel[:, t // 2:] = model[:, t // 2:]
    panel[g < 1.0 / result.search.low_resolution_angstrom] = 0.5
    top = Image.fromarray((panel * 255).astype(np.uint8), mode="L").convert("RGB")
    size = 512
    top = top.resize((size, size), Image.Resampling.BILINEAR)
    plot_h = 200
    canvas = Image.new("RGB", (size, size + plot_h), "white")
    canvas.paste(top, (0, 0))
    draw = ImageDraw.Draw(canvas)
    freqs = result.frequencies_per_angstrom
    if freqs.size > 2:
        f_max = freqs[-1]

        def xy(f: float, v: float) -> tuple[float, float]:
            return (8 + (size - 16) * f / f_max, size + plot_h - 10 - (plot_h - 30) * v)

        start = int(np.searchsorted(freqs, 1.0 / result.search.low_resolution_angstrom))
        data = result.equiphase_average[start:]
        if data.size:
            d_lo, d_hi = np.percentile(data, [1, 99])
            scaled = np.clip((data - d_lo) / max(d_hi - d_lo, 1e-12), 0, 1)
            draw.line([xy(f, v) for f, v in zip(freqs[start:], scaled, strict=True)],
                      fill=(0, 0, 0), width=1)
            draw.line([xy(f, v) for f, v in zip(freqs[start:], result.fitted_curve[start:],
                                                 strict=True)], fill=(220, 30, 30), width=1)
            cc = np.clip(result.fit_cc[start:], 0, 1)
            draw.line([xy(f, v) for f, v in zip(freqs[start:], cc, strict=True)],
                      fill=(40, 80, 220), width=1)
        if result.resolution_angstrom > 0:
            x = xy(1.0 / result.resolution_angstrom, 0)[0]
            draw.line([(x, size + 12), (x, size + plot_h - 10)], fill=(30, 160, 30), width=1)
        label = (f"U {result.defocus_u_angstrom:.0f} Å  V {result.defocus_v_angstrom:.0f} Å  "
                 f"angle {result.astigmatism_angle_degrees:.1f}°  phase "
                 f"{result.phase_shift_degrees:.1f}°  res {result.resolution_angstrom:.1f} Å  "
                 f"score {result.score:.3f}  {'ok' if result.fit_ok else 'FAILED'}")
        draw.text((6, size + 2), label, fill=(0, 0, 0))
    canvas.save(path, format="PNG")
