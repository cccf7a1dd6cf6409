"""``phantom``: a deterministic synthetic chest CT in Hounsfield units, with exact lesion masks.

Each slice is drawn from its own generator seeded by (seed, slice index), so slice 7 is the same
whatever the count. Anatomy: air outside (-1000 HU), a body ellipse with a fat layer (-100 HU) around
soft tissue (+40 HU), heart, sternum, ribs and a vertebra (bone +700 HU), two lungs (-850 HU, denser
posteriorly) with vessels: branches from the hilum and small cross-sections whose partial-volume
values (-700..+40 HU) overlap ground-glass on purpose.

Lesions, inside the lungs only, each with its own size, shape, position and intensity:

- ground-glass (1): irregular patches blended towards -700..-350 HU with soft edges; the mask is
  where the patch contributes at least half its amplitude (vessels stay visible through it);
- consolidation (2): dense, sharp-edged patches of -100..+50 HU, more often posterior;
- pleural effusion (3): a crescent of fluid (0..+20 HU) at the posterior lung base, thickest at
  the bottom, tapering laterally, inside the lung boundary.

Later lesions cover earlier ones in image and mask alike (effusion over consolidation over
ground-glass). Correlated CT-like noise (10..28 HU per slice) goes on top. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from covseg.plugins import (
    MEDSEG_LABELS,
    CovsegError,
    CTSlices,
    DatasetEntry,
    check_known,
    hookimpl,
    int_option,
)

AIR_HU, FAT_HU, SOFT_TISSUE_HU, LUNG_HU, BONE_HU = -1000.0, -100.0, 40.0, -850.0, 700.0
GROUND_GLASS_HU = (-700.0, -350.0)
CONSOLIDATION_HU = (-100.0, 50.0)
EFFUSION_HU = (0.0, 20.0)
NOISE_SIGMA_HU = (10.0, 28.0)
FIELD_OF_VIEW_MM = 350.0

OPTIONS = {"count": "number of slices (default 100)", "size": "side in pixels (default 256)",
           "seed": "random seed (default 0)"}


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates in [-1, 1] (x: columns, y: rows, y grows posteriorly)."""

    x: np.ndarray
    y: np.ndarray
    pixel: float  # one pixel in these units

    @property
    def size(self) -> int:
        return self.x.shape[0]


@cache
def _grid(size: int) -> _Grid:
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return _Grid(x, y, 2.0 / size)


@dataclass(frozen=True)
class _Shape:
    """An ellipse (centre, semi-axes, angle), optionally with an irregular, wavy outline."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    waves: tuple[tuple[int, float, float], ...] = ()  # (harmonic, amplitude, phase)

    def reach(self) -> float:
        return max(self.a, self.b) * (1.0 + sum(abs(amplitude) for _, amplitude, _ in self.waves))

    def window(self, grid: _Grid, margin: float) -> tuple[slice, slice]:
        """Rows and columns of the bounding square, plus a margin, clipped to the image."""
        radius = self.reach() + margin
        size = grid.size

        def span(centre: float) -> slice:
            low = int(np.floor((centre - radius + 1.0) / 2.0 * size))
            high = int(np.ceil((centre + radius + 1.0) / 2.0 * size)) + 1
            return slice(min(max(low, 0), size), min(max(high, 0), size))

        return span(self.cy), span(self.cx)

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the outline (positive inside), along the ray from the centre."""
        dx, dy = x - np.float32(self.cx), y - np.float32(self.cy)
        cos, sin = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle))
        u = (dx * cos + dy * sin) / np.float32(self.a)
        v = (dy * cos - dx * sin) / np.float32(self.b)
        radius = np.sqrt(u * u + v * v)
        if self.waves:
            theta = np.arctan2(v, u)
            outline = np.ones_like(theta)
            for harmonic, amplitude, phase in self.waves:
                outline += np.float32(amplitude) * np.cos(harmonic * theta + np.float32(phase))
            radius = radius / outline
        euclid = np.sqrt(dx * dx + dy * dy)
        boundary = np.where(radius > 1e-6, euclid / np.maximum(radius, 1e-6), min(self.a, self.b))
        return (boundary * (1.0 - radius)).astype(np.float32)


def _ramp(distance: np.ndarray, edge: float) -> np.ndarray:
    """Weight 0..1 across an edge of the given width, exactly 0.5 on the outline."""
    return np.clip(0.5 + distance / np.float32(edge), 0.0, 1.0)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency texture: a (cells+1)^2 random lattice, bilinearly interpolated."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    height, width = shape

    def weights(count: int) -> tuple[np.ndarray, np.ndarray]:
        position = np.linspace(0.0, cells, max(count, 1), dtype=np.float32)[:count]
        index = np.minimum(position.astype(np.int64), cells - 1)
        return index, position - index

    rows, row_frac = weights(height)
    cols, col_frac = weights(width)
    along_columns = coarse[:, cols] * (1.0 - col_frac) + coarse[:, cols + 1] * col_frac
    return along_columns[rows] * (1.0 - row_frac[:, None]) + along_columns[rows + 1] * row_frac[:, None]


def _blend(image: np.ndarray, window: tuple[slice, slice], weight: np.ndarray, value) -> None:
    """image <- image * (1 - weight) + value * weight, in place, inside the window."""
    region = image[window]
    region += weight * (value - region)


class _SliceDrawer:
    """Draws one phantom slice; every random choice comes from ``rng``, in a fixed order."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.grid = _grid(size)
        self.rng = rng
        self.hu = np.full((size, size), AIR_HU, dtype=np.float32)
        self.labels = np.zeros((size, size), dtype=np.uint8)
        self.lung = np.zeros((size, size), dtype=np.float32)
        self.scale = float(rng.uniform(0.9, 1.04))

    def local(self, shape: _Shape, margin: float) -> tuple[tuple[slice, slice], np.ndarray]:
        window = shape.window(self.grid, margin)
        return window, shape.distance(self.grid.x[window], self.grid.y[window])

    def solid(self, shape: _Shape, value, edge_pixels: float = 1.0) -> None:
        edge = edge_pixels * self.grid.pixel
        window, distance = self.local(shape, edge)
        _blend(self.hu, window, _ramp(distance, edge), value)

    def draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        body = self.body()
        self.bones(body)
        lungs = [self.lung_shape(side, body) for side in (-1, 1)]
        for lung in lungs:
            self.parenchyma(lung)
        self.lesions(lungs)
        self.noise()
        return self.hu, self.labels, self.lung > 0.5

    # Anatomy -----------------------------------------------------------------------------------
    def body(self) -> _Shape:
        rng, scale, grid = self.rng, self.scale, self.grid
        body = _Shape(0.0, 0.04 + rng.uniform(-0.02, 0.02), 0.86 * scale * rng.uniform(0.96, 1.04),
                      0.62 * scale * rng.uniform(0.94, 1.06))
        distance = body.distance(grid.x, grid.y)
        fat = rng.uniform(0.03, 0.07) * scale
        everything = (slice(None), slice(None))
        _blend(self.hu, everything, _ramp(distance, 1.5 * grid.pixel), FAT_HU)
        tissue = SOFT_TISSUE_HU + 12.0 * _smooth_field(rng, self.hu.shape, 6)
        _blend(self.hu, everything, _ramp(distance - fat, 2.0 * grid.pixel), tissue)
        heart = _Shape(0.05 * scale, body.cy - 0.02, 0.17 * scale, 0.15 * scale, rng.uniform(-0.3, 0.3))
        self.solid(heart, SOFT_TISSUE_HU + rng.uniform(0, 15), edge_pixels=2.0)
        return body

    def bones(self, body: _Shape) -> None:
        rng, scale = self.rng, self.scale
        vertebra_cy = body.cy + body.b * 0.55
        vertebra = _Shape(0.0, vertebra_cy, 0.085 * scale, 0.08 * scale)
        self.solid(vertebra, BONE_HU)
        self.solid(_Shape(0.0, vertebra_cy, 0.065 * scale, 0.06 * scale), 230.0)  # cancellous core
        canal_cy = vertebra_cy + 0.115 * scale
        self.solid(_Shape(0.0, canal_cy, 0.07 * scale, 0.055 * scale), BONE_HU)  # arch
        self.solid(_Shape(0.0, canal_cy + 0.075 * scale, 0.018 * scale, 0.045 * scale), BONE_HU)
        self.solid(_Shape(0.0, canal_cy, 0.035 * scale, 0.03 * scale), 15.0)  # spinal canal
        self.solid(_Shape(0.0, body.cy - body.b * 0.86, 0.05 * scale, 0.025 * scale), 500.0)  # sternum
        ring_a, ring_b = body.a * 0.88, body.b * 0.86
        for angle in np.radians(np.linspace(-65.0, 65.0, 7)):
            for mirrored in (angle, np.pi - angle):
                theta = mirrored + np.radians(rng.uniform(-5.0, 5.0))
                rib = _Shape(ring_a * np.cos(theta), body.cy + ring_b * np.sin(theta), 0.035 * scale,
                             0.018 * scale, theta + np.pi / 2)
                self.solid(rib, BONE_HU * rng.uniform(0.8, 1.0))

    def lung_shape(self, side: int, body: _Shape) -> _Shape:
        rng, scale = self.rng, self.scale
        centre_x = side * 0.36 * scale * rng.uniform(0.95, 1.05)
        centre_y = body.cy - 0.06 + rng.uniform(-0.02, 0.02)
        return _Shape(centre_x, centre_y, 0.29 * scale * rng.uniform(0.9, 1.08),
                      0.44 * scale * rng.uniform(0.9, 1.05), side * rng.uniform(0.0, 0.15))

    def parenchyma(self, lung: _Shape) -> None:
        rng, grid = self.rng, self.grid
        window, distance = self.local(lung, 2.0 * grid.pixel)
        weight = _ramp(distance, 1.5 * grid.pixel)
        gravity = 30.0 * (grid.y[window] - lung.cy) / lung.b  # posterior lung is denser
        texture = 25.0 * _smooth_field(rng, weight.shape, 5)
        _blend(self.hu, window, weight, LUNG_HU + gravity + texture)
        self.lung[window] = np.maximum(self.lung[window], weight)

    def point_in(self, lung: _Shape, radius: tuple[float, float],
                 posterior: bool = False) -> tuple[float, float]:
        """A random point inside the lung at a relative radius, optionally in its posterior half."""
        rng = self.rng
        relative = np.sqrt(rng.uniform(radius[0] ** 2, radius[1] ** 2))
        phi = rng.uniform(0.2, np.pi - 0.2) if posterior else rng.uniform(0.0, 2.0 * np.pi)
        u, v = relative * np.cos(phi) * lung.a, relative * np.sin(phi) * lung.b
        cos, sin = np.cos(lung.angle), np.sin(lung.angle)
        return lung.cx + u * cos - v * sin, lung.cy + u * sin + v * cos

    def vessels(self, lung: _Shape) -> None:
        """Branches from the hilum, then round cross-sections of vessels running through the slice."""
        rng, grid = self.rng, self.grid
        side = 1.0 if lung.cx > 0 else -1.0
        hilum = (lung.cx - side * 0.55 * lung.a, lung.cy + 0.05 * lung.b)
        for _ in range(int(rng.integers(3, 7))):
            start = np.array(hilum, dtype=np.float64)
            heading = rng.uniform(-np.pi, np.pi)
            width = rng.uniform(0.008, 0.014) * self.scale
            for _ in range(int(rng.integers(2, 4))):
                heading += rng.uniform(-0.6, 0.6)
                length = rng.uniform(0.06, 0.14) * self.scale
                end = start + length * np.array([np.cos(heading), np.sin(heading)])
                self.segment(start, end, width, rng.uniform(0.55, 0.9))
                start, width = end, width * 0.7
        count = int(rng.integers(15, 35))
        centres = np.array([self.point_in(lung, (0.1, 0.95)) for _ in range(count)], dtype=np.float32)
        radii = (rng.uniform(0.004, 0.012, count) * self.scale).astype(np.float32)
        strengths = rng.uniform(0.5, 1.0, count).astype(np.float32)
        window = lung.window(grid, grid.pixel)
        x, y = grid.x[window][..., None], grid.y[window][..., None]
        distance = radii - np.sqrt((x - centres[:, 0]) ** 2 + (y - centres[:, 1]) ** 2)
        self.vessel(window, (_ramp(distance, grid.pixel) * strengths).max(axis=-1))

    def vessel(self, window: tuple[slice, slice], weight: np.ndarray) -> None:
        """Blend vessel blood (+40 HU), weights with partial-volume edges, only where there is lung."""
        _blend(self.hu, window, weight * self.lung[window], SOFT_TISSUE_HU)

    def segment(self, start: np.ndarray, end: np.ndarray, width: float, strength: float) -> None:
        middle = (start + end) / 2.0
        half_length = float(np.linalg.norm(end - start)) / 2.0
        box = _Shape(float(middle[0]), float(middle[1]), half_length + width, half_length + width)
        window = box.window(self.grid, self.grid.pixel)
        x, y = self.grid.x[window], self.grid.y[window]
        direction = (end - start) / max(2.0 * half_length, 1e-9)
        along = np.clip((x - start[0]) * direction[0] + (y - start[1]) * direction[1], 0.0, 2.0 * half_length)
        dx, dy = x - (start[0] + along * direction[0]), y - (start[1] + along * direction[1])
        distance = (width / 2.0 - np.sqrt(dx * dx + dy * dy)).astype(np.float32)
        self.vessel(window, _ramp(distance, self.grid.pixel) * np.float32(strength))

    # Lesions -----------------------------------------------------------------------------------
    def lesion(self, shape: _Shape, value, edge: float, label: int) -> None:
        window, distance = self.local(shape, edge)
        weight = _ramp(distance, edge) * self.lung[window]
        _blend(self.hu, window, weight, value)
        self.labels[window][weight > 0.5] = label

    def wavy(self, x: float, y: float, a: float) -> _Shape:
        rng = self.rng
        waves = tuple((harmonic, rng.uniform(0.0, 0.12), rng.uniform(0, 2 * np.pi)) for harmonic in (2, 3, 5))
        return _Shape(x, y, a, a * rng.uniform(0.5, 1.0), rng.uniform(0, np.pi), waves)

    def lesions(self, lungs: list[_Shape]) -> None:
        rng, scale, pixel = self.rng, self.scale, self.grid.pixel
        ground_glass = [lungs[rng.integers(2)] for _ in range(rng.choice(5, p=[0.25, 0.3, 0.25, 0.12, 0.08]))]
        for lung in ground_glass:
            shape = self.wavy(*self.point_in(lung, (0.35, 0.9)), rng.uniform(0.08, 0.26) * scale)
            edge = max(rng.uniform(0.25, 0.5) * shape.b, 1.5 * pixel)
            window = shape.window(self.grid, edge)
            texture = rng.uniform(*GROUND_GLASS_HU) + 35.0 * _smooth_field(
                rng, self.hu[window].shape, 3)
            self.lesion(shape, texture, edge, label=1)
        for lung in lungs:
            self.vessels(lung)
        for lung in [lungs[rng.integers(2)] for _ in range(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))]:
            shape = self.wavy(*self.point_in(lung, (0.3, 0.9), posterior=rng.random() < 0.7),
                              rng.uniform(0.05, 0.16) * scale)
            window = shape.window(self.grid, 0.6 * pixel)
            texture = rng.uniform(*CONSOLIDATION_HU) + 8.0 * _smooth_field(rng, self.hu[window].shape, 2)
            self.lesion(shape, np.clip(texture, *CONSOLIDATION_HU), 0.6 * pixel, label=2)
        for lung in lungs:
            if rng.random() < 0.14:
                self.effusion(lung, rng.uniform(0.05, 0.16) * scale)

    def effusion(self, lung: _Shape, thickness: float) -> None:
        """Fluid between the lung outline and the same outline moved up (anterior) by the thickness."""
        edge = 0.6 * self.grid.pixel
        above = _Shape(lung.cx, lung.cy - thickness, lung.a, lung.b, lung.angle)
        window, _ = self.local(lung, edge)
        outside_above = 1.0 - _ramp(above.distance(self.grid.x[window], self.grid.y[window]), edge)
        weight = np.minimum(self.lung[window], outside_above)
        _blend(self.hu, window, weight, self.rng.uniform(*EFFUSION_HU))
        self.labels[window][weight > 0.5] = 3

    def noise(self) -> None:
        """Correlated noise: white noise smoothed by a 3x3 box, rescaled to the slice's sigma."""
        size = self.hu.shape[0]
        white = self.rng.standard_normal((size + 2, size + 2), dtype=np.float32)
        rows = white[:-2] + white[1:-1] + white[2:]
        box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
        self.hu += box * np.float32(self.rng.uniform(*NOISE_SIGMA_HU) / 3.0)


def generate_phantom(count: int = 100, size: int = 256, seed: int = 0) -> CTSlices:
    """``count`` slices of ``size`` x ``size`` in HU with exact masks and lung masks (see module doc)."""
    ids, images, masks, lungs = [], [], [], []
    for index in range(count):
        hu, labels, lung = _SliceDrawer(size, np.random.default_rng([seed, index])).draw()
        ids.append(f"phantom_{index + 1:04d}")
        images.append(hu)
        masks.append(labels)
        lungs.append(lung)
    pixel_mm = FIELD_OF_VIEW_MM / size
    return CTSlices(ids=ids, images=images, masks=masks, intensity="hu",
                    source=f"phantom(count={count}, size={size}, seed={seed})",
                    spacing=[(pixel_mm, pixel_mm)] * count, lung_masks=lungs,
                    labels=MEDSEG_LABELS)


def load(path: Path | None, options: Mapping[str, str]) -> CTSlices:
    """The ``phantom`` dataset entry: options count, size, seed."""
    if path is not None:
        raise CovsegError(f"dataset phantom generates its slices and reads no path; drop --data {path}")
    check_known(options, OPTIONS, "phantom")
    return generate_phantom(
        count=int_option(options, "count", 100, 1, 100_000),
        size=int_option(options, "size", 256, 32, 4096),
        seed=int_option(options, "seed", 0, 0, 2**63 - 1),
    )


@hookimpl
def covseg_datasets() -> list[DatasetEntry]:
    return [DatasetEntry("phantom", load, "Synthetic chest CT in HU with exact masks (embedded default).",
                         needs_path=False)]
