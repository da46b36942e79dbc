"""A batched Shapes World renderer in PyTorch, with the augmentations that stand in for other renderers.

Draws every object of a batch at once on the training device (supersampled coverage), then applies
what a different renderer or codec would change: per-channel color jitter (at most ±15), per-pixel
noise (at most ±8), blur, resolution, and block-DCT quantization that mimics JPEG (8x8, 4:2:0 chroma)
and WebP (4x4) artefacts. Output is float RGB in [0, 1] at the model's input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shapes_world import COLOR_RGB, COLORS

COLOR_TABLE = torch.tensor([COLOR_RGB[c] for c in COLORS], dtype=torch.float32) / 255.0
STAR_INNER = 0.45


# Per shape: number of polygon sides (0 = circle, -1 = star) and the angle of the first edge normal.
SIDES = torch.tensor([0, 4, 3, -1, 6])
FIRST_NORMAL = torch.tensor([0.0, math.pi / 2, -math.pi / 2 + math.pi / 3, 0.0, math.pi / 6])
_STAR_TIP = (1.0, 0.0)
_STAR_INNER = (STAR_INNER * math.cos(math.pi / 5), STAR_INNER * math.sin(math.pi / 5))


def coverage(shape: torch.Tensor, lx: torch.Tensor, ly: torch.Tensor) -> torch.Tensor:
    """Inside test in object-local coordinates (radius units) for a batch of shapes.

    Regular polygons are inscribed in the unit circle: a point is inside when its projection on the
    nearest edge normal is within the apothem. The star (tips on the unit circle, apex up, inner
    radius 0.45) is folded into one half-spike and tested against its edge.
    """
    view = (*shape.shape, *([1] * (lx.dim() - shape.dim())))
    sides = SIDES.to(lx.device)[shape].view(view)
    first = FIRST_NORMAL.to(lx.device)[shape].view(view)
    rho = torch.sqrt(lx * lx + ly * ly)
    theta = torch.atan2(ly, lx)
    n = sides.clamp(min=3).float()
    sector = 2 * math.pi / n
    a = torch.remainder(theta - first + sector / 2, sector) - sector / 2
    polygon = rho * torch.cos(a) <= torch.cos(math.pi / n)
    # Star: angle from the top tip (y grows downwards), folded to [0, pi/5].
    spike = 2 * math.pi / 5
    b = torch.remainder(theta + math.pi / 2, spike)
    b = torch.minimum(b, spike - b)
    px, py = rho * torch.cos(b), rho * torch.sin(b)
    ex, ey = _STAR_INNER[0] - _STAR_TIP[0], _STAR_INNER[1] - _STAR_TIP[1]
    star = (px - _STAR_TIP[0]) * ey - py * ex <= 0
    return torch.where(sides == 0, rho <= 1, torch.where(sides == -1, star, polygon))


def render(
    objects: dict[str, torch.Tensor],
    size: int,
    supersample: int = 3,
    color_jitter: float = 15.0,
    generator: torch.Generator | None = None,
    max_elements: int = 1 << 28,
) -> torch.Tensor:
    """Renders in chunks so that the per-pixel, per-object work stays within max_elements."""
    n, k = objects["x"].shape
    per_scene = k * (size * supersample) ** 2
    chunk = max(1, max_elements // per_scene)
    if n <= chunk:
        return _render(objects, size, supersample, color_jitter, generator)
    parts = [
        _render({key: v[i : i + chunk] for key, v in objects.items()}, size, supersample, color_jitter, generator)
        for i in range(0, n, chunk)
    ]
    return torch.cat(parts, 0)


def _render(
    objects: dict[str, torch.Tensor],
    size: int,
    supersample: int = 3,
    color_jitter: float = 15.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Renders a batch of scenes.

    objects: tensors of shape [N, K] (K = max objects): shape, color, x, y, r, rotation (degrees), valid;
    and background [N] (0-255). Returns [N, 3, size, size] floats in [0, 1].
    """
    device = objects["x"].device
    n, k = objects["x"].shape
    s = size * supersample
    coords = (torch.arange(s, device=device, dtype=torch.float32) + 0.5) / s
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    gx = gx.view(1, 1, s, s)
    gy = gy.view(1, 1, s, s)
    x = objects["x"].view(n, k, 1, 1)
    y = objects["y"].view(n, k, 1, 1)
    r = objects["r"].view(n, k, 1, 1).clamp(min=1e-3)
    theta = torch.deg2rad(objects["rotation"]).view(n, k, 1, 1)
    dx, dy = (gx - x) / r, (gy - y) / r
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Rotate the pixel into the object's frame (inverse rotation).
    lx = dx * cos + dy * sin
    ly = -dx * sin + dy * cos
    inside = coverage(objects["shape"], lx, ly) & objects["valid"].view(n, k, 1, 1)
    mask = F.avg_pool2d(inside.float(), supersample)  # [N, K, size, size] coverage
    colors = COLOR_TABLE.to(device)[objects["color"].clamp(min=0)]  # [N, K, 3]
    jitter = (torch.rand(n, k, 3, device=device, generator=generator) * 2 - 1) * (color_jitter / 255.0)
    colors = (colors + jitter).clamp(0, 1)
    image = (objects["background"].float() / 255.0).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    for j in range(k):
        m = mask[:, j : j + 1]
        image = image * (1 - m) + colors[:, j].view(n, 3, 1, 1) * m
    return image


# ---------------------------------------------------------------- codec and renderer differences


def _dct_matrix(n: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * i.view(1, -1) + 1) * i.view(-1, 1) / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)
JPEG_CHROMA = torch.full((8, 8), 99.0)
JPEG_CHROMA[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=torch.float32)


def _quality_scale(quality: torch.Tensor) -> torch.Tensor:
    q = quality.clamp(1, 100)
    return torch.where(q < 50, 5000 / q, 200 - 2 * q) / 100


def _block_quantize(channel: torch.Tensor, block: int, table: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """channel [N, H, W] in 0-255 units; quantizes block-DCT coefficients with table*scale."""
    n, h, w = channel.shape
    d = _dct_matrix(block, channel.device)
    blocks = channel.view(n, h // block, block, w // block, block).permute(0, 1, 3, 2, 4)
    coeffs = d @ (blocks - 128) @ d.T
    q = (table.to(channel.device) * scale.view(n, 1, 1, 1, 1)).clamp(min=1)
    coeffs = torch.round(coeffs / q) * q
    out = d.T @ coeffs @ d + 128
    return out.permute(0, 1, 3, 2, 4).reshape(n, h, w)


def lossy_codec(image: torch.Tensor, quality: torch.Tensor, block: int = 8) -> torch.Tensor:
    """JPEG-like (block 8, 4:2:0 chroma) or WebP-like (block 4) compression of [N, 3, H, W] in [0, 1]."""
    n, _, h, w = image.shape
    rgb = image * 255
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    yy = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    scale = _quality_scale(quality)
    luma_table = JPEG_LUMA if block == 8 else JPEG_LUMA[:4, :4]
    chroma_table = JPEG_CHROMA if block == 8 else JPEG_CHROMA[:4, :4]
    yy = _block_quantize(yy, block, luma_table, scale)
    chroma = torch.stack([cb, cr], 1)
    small = F.avg_pool2d(chroma, 2)
    hs, ws = small.shape[-2:]
    ph, pw = (-hs) % block, (-ws) % block
    small = F.pad(small, (0, pw, 0, ph), mode="replicate")
    small = torch.stack(
        [_block_quantize(small[:, i], block, chroma_table, scale) for i in range(2)], 1
    )[:, :, :hs, :ws]
    chroma = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    cb, cr = chroma[:, 0] - 128, chroma[:, 1] - 128
    r = yy + 1.402 * cr
    g = yy - 0.344136 * cb - 0.714136 * cr
    b = yy + 1.772 * cb
    return (torch.stack([r, g, b], 1) / 255).clamp(0, 1)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0.05:
        return image
    radius = max(1, int(math.ceil(sigma * 2.5)))
    t = torch.arange(-radius, radius + 1, device=image.device, dtype=torch.float32)
    kernel = torch.exp(-(t * t) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    c = image.shape[1]
    kx = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    image = F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="replicate"), kx, groups=c)
    return F.conv2d(F.pad(image, (0, 0, radius, radius), mode="replicate"), ky, groups=c)


def render_augmented(
    objects: dict[str, torch.Tensor],
    out_size: int,
    rng: torch.Generator | None = None,
    augment: bool = True,
    render_size: int | None = None,
    codec: str | None = None,
    quality: float | None = None,
    noise: float = 8.0,
    max_render: int = 384,
) -> torch.Tensor:
    """Renders at a (random) source resolution, degrades like another renderer/codec, resizes to out_size."""
    device = objects["x"].device
    n = objects["x"].shape[0]

    def uniform() -> float:
        return float(torch.rand(1, generator=rng).item())

    if augment:
        # The spec fixes no hexagon orientation: other renderers may draw it pointy-top.
        flip = (objects["shape"] == 4) & (torch.rand(objects["shape"].shape, device=device, generator=rng) < 0.5)
        objects = {**objects, "rotation": objects["rotation"] + flip.float() * 30.0}
    if render_size is None:
        render_size = int(16 * round((64 + uniform() ** 1.5 * (max_render - 64)) / 16)) if augment else 256
    supersample = 2 if render_size >= 160 else 3
    image = render(objects, render_size, supersample=supersample, color_jitter=15.0 if augment else 0.0)
    if augment and uniform() < 0.3:
        image = gaussian_blur(image, uniform() * 0.9)
    amplitude = noise * uniform() if augment else 0.0
    if amplitude > 0:
        image = image + (torch.rand(image.shape, device=device) * 2 - 1) * (amplitude / 255.0)
        image = image.clamp(0, 1)
    if codec is None and augment:
        roll = uniform()
        codec = "jpeg" if roll < 0.45 else "webp" if roll < 0.7 else "none"
    if codec in ("jpeg", "webp"):
        q = torch.full((n,), quality if quality is not None else 35 + uniform() * 60, device=device)
        image = lossy_codec(image, q, block=8 if codec == "jpeg" else 4)
    image = torch.round(image * 255) / 255  # 8-bit storage
    if render_size != out_size:
        mode = "bicubic" if (not augment or uniform() < 0.6) else "bilinear"
        image = F.interpolate(image, size=(out_size, out_size), mode=mode, antialias=True, align_corners=False)
        image = image.clamp(0, 1)
    return image
