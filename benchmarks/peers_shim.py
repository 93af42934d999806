"""Benchmark-harness support for running the measured peers (teamtomo's torch packages).

Only the science benchmarks import this; nothing under src/ does.

torchvision's compiled ops cannot load with the CPU build of torch installed by the `peers`
extra (PyPI's torchvision 0.28 wheel is built against CUDA torch: importing it fails with
"operator torchvision::nms does not exist"). torch-ctf-estimation uses a single function of
torchvision, `torchvision.transforms.functional.gaussian_blur` (to smooth the rotational
average of the power spectrum into a background), so `install_torchvision_standin()` puts a
minimal `torchvision` / `torchvision.transforms` / `torchvision.transforms.functional` in
`sys.modules` whose `gaussian_blur` is written here with torchvision's documented semantics:
`kernel_size` as an odd int or (kx, ky), `sigma` as a float or (sigma_x, sigma_y) (default
0.3 · ((k − 1) · 0.5 − 1) + 0.8), a sampled Gaussian of `kernel_size` taps normalised to sum 1,
reflect padding of k // 2 on each side (torch's "reflect": the edge sample is not repeated), and
an output of the input's shape; it is applied separably (x, then y), which equals the 2-D
kernel because the Gaussian is separable.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

STANDIN_NOTE = ("torchvision's compiled ops cannot load with the CPU build of torch; its "
                "gaussian_blur is replaced by an equivalent written in the harness")


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return value, value
    items = tuple(value)
    if len(items) == 1:
        return items[0], items[0]
    if len(items) != 2:
        raise ValueError(f"{name} must be a number or a sequence of 1 or 2 numbers, got {value}")
    return items[0], items[1]


def gaussian_blur(img, kernel_size: int | Sequence[int],
                  sigma: float | Sequence[float] | None = None):
    """Gaussian blur of a (..., H, W) tensor with torchvision's kernel and reflect padding."""
    import torch
    import torch.nn.functional as F

    kx, ky = (int(k) for k in _pair(kernel_size, "kernel_size"))
    for k in (kx, ky):
        if k <= 0 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if sigma is None:
        sx, sy = (0.3 * ((k - 1) * 0.5 - 1) + 0.8 for k in (kx, ky))
    else:
        sx, sy = (float(s) for s in _pair(sigma, "sigma"))
    if sx <= 0 or sy <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    shape = img.shape
    if img.ndim < 2:
        raise ValueError(f"gaussian_blur needs a (..., H, W) tensor, got shape {tuple(shape)}")
    dtype = img.dtype if img.is_floating_point() else torch.float32
    x = img.reshape(-1, 1, shape[-2], shape[-1]).to(dtype)

    def kernel(k: int, s: float):
        half = (k - 1) * 0.5
        t = torch.linspace(-half, half, k, dtype=dtype, device=img.device)
        w = torch.exp(-0.5 * (t / s) ** 2)
        return w / w.sum()

    x = F.pad(x, (kx // 2, kx // 2, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel(kx, sx).reshape(1, 1, 1, kx))
    x = F.pad(x, (0, 0, ky // 2, ky // 2), mode="reflect")
    x = F.conv2d(x, kernel(ky, sy).reshape(1, 1, ky, 1))
    out = x.reshape(shape)
    return out if img.is_floating_point() else out.round().to(img.dtype)


def install_torchvision_standin() -> bool:
    """Put the stand-in in sys.modules unless a working torchvision is already imported.
    Returns True when the stand-in is in place."""
    current = sys.modules.get("torchvision")
    if current is not None and not getattr(current, "__cryovault_standin__", False):
        return False
    package = types.ModuleType("torchvision")
    package.__path__ = []  # a package, so that submodule imports resolve through sys.modules
    package.__cryovault_standin__ = True
    transforms = types.ModuleType("torchvision.transforms")
    transforms.__path__ = []
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.gaussian_blur = gaussian_blur
    transforms.functional = functional
    package.transforms = transforms
    sys.modules.update({"torchvision": package, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})
    return True
