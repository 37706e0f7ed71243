"""Procedural shapes dataset after the lecture's PurdueShapes5GAN.

64x64 RGB images on black, each with 1-5 shapes (rectangle, triangle, disk, oval, star) at a random position,
size, orientation and uniform colour. Shapes are rotated by forward nearest-pixel mapping, with no
interpolation: some pixels inside a rotated outline receive no source pixel and stay black. These holes
are the fine detail a good tokenizer must reproduce; each sample records them in a hole mask.

Image i of seed s depends only on (s, i), so any slice can be generated alone, in any order or process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..fileio import atomic_path, atomic_write_text

SHAPE_TYPES = ("rectangle", "triangle", "disk", "oval", "star")
TRAIN_SEED = 0
HELDOUT_SEED = 1
METADATA_NAME = "metadata.jsonl"


@dataclass
class ShapesConfig:
    image_size: int = 64
    min_shapes: int = 1
    max_shapes: int = 5
    min_radius: float = 6.0  # half-extent of a shape in pixels
    max_radius: float = 14.0
    min_brightness: int = 100  # the brightest channel of each colour, so no shape is near-black

    def __post_init__(self) -> None:
        if not 1 <= self.min_shapes <= self.max_shapes:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes, got {self.min_shapes}, {self.max_shapes}")
        if not 2 <= self.min_radius <= self.max_radius < self.image_size / 2:
            raise ValueError("need 2 <= min_radius <= max_radius < image_size / 2")
        if not 0 <= self.min_brightness <= 255:
            raise ValueError("min_brightness must be in 0..255")


@dataclass
class ShapeInfo:
    type: str
    color: tuple[int, int, int]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the painted pixels, exclusive end
    angle: float  # degrees
    center: tuple[float, float]  # x, y
    radius: float


@dataclass
class ShapeSample:
    image: np.ndarray  # uint8 [H, W, 3]
    hole_mask: np.ndarray  # bool [H, W]: inside some shape's outline, yet left background
    shapes: list[ShapeInfo] = field(default_factory=list)

    @property
    def num_shapes(self) -> int:
        return len(self.shapes)

    @property
    def type_counts(self) -> list[int]:
        return [sum(s.type == t for s in self.shapes) for t in SHAPE_TYPES]

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.image)

    def metadata(self) -> dict[str, Any]:
        """JSON-friendly description of the sample (what goes beside each image in a dataset or folder)."""
        holes = np.argwhere(self.hole_mask)
        return {
            "num_shapes": self.num_shapes,
            "shape_types": [s.type for s in self.shapes],
            "type_counts": self.type_counts,
            "colors": [list(s.color) for s in self.shapes],
            "boxes": [list(s.box) for s in self.shapes],
            "angles": [round(s.angle, 3) for s in self.shapes],
            "hole_pixels": holes.tolist(),  # [[y, x], ...]
        }


def _polygon_contains(u: np.ndarray, v: np.ndarray, edges: np.ndarray, radius: float) -> np.ndarray:
    """Even-odd ray casting of many points (u and v of one shape) against one polygon, all edges at once: `edges`
    [4, N, 1] holds each edge's start and end (au, av, bu, bv) on the unit polygon, scaled here by `radius`."""
    au, av, bu, bv = edges * radius
    shape = u.shape
    u, v = u.reshape(1, -1), v.reshape(1, -1)
    crosses = (av > v) != (bv > v)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = (bu - au) * (v - av) / (bv - av) + au
    return (np.count_nonzero(crosses & (u < at), axis=0) % 2 == 1).reshape(shape)


def _unit_polygon_edges(radii: list[float], offset_degrees: float = 90.0) -> np.ndarray:
    """The edges of a polygon of half-extent 1 (vertex i at radii[i]), as `_polygon_contains` takes them."""
    count = len(radii)
    angles = np.deg2rad(offset_degrees + 360.0 * np.arange(count) / count)
    vertices = np.stack([np.cos(angles) * radii, -np.sin(angles) * radii], axis=1)
    ends = np.roll(vertices, 1, axis=0)  # edge i runs from vertex i - 1 to vertex i
    return np.stack([vertices[:, 0], vertices[:, 1], ends[:, 0], ends[:, 1]])[:, :, None]


_TRIANGLE = _unit_polygon_edges([1.0] * 3)
_STAR = _unit_polygon_edges([1.0, 0.45] * 5)


def _shape_contains(kind: str, u: np.ndarray, v: np.ndarray, radius: float, aspect: float) -> np.ndarray:
    """Membership of local, unrotated coordinates (u right, v down) in a shape of half-extent `radius`."""
    if kind == "rectangle":
        return (np.abs(u) <= radius) & (np.abs(v) <= radius * aspect)
    if kind == "disk":
        return u**2 + v**2 <= radius**2
    if kind == "oval":
        return (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1.0
    if kind == "triangle":
        return _polygon_contains(u, v, _TRIANGLE, radius)
    if kind == "star":
        return _polygon_contains(u, v, _STAR, radius)
    raise ValueError(f"unknown shape type {kind!r}")


@lru_cache(maxsize=64)
def _source_grid(reach: int) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(-reach, reach + 1, dtype=np.float64)
    u, v = np.meshgrid(grid, grid)
    return u, v


def _draw_shape(
    canvas: np.ndarray, outline: np.ndarray, rng: np.random.Generator, config: ShapesConfig
) -> ShapeInfo:
    size = config.image_size
    kind = SHAPE_TYPES[rng.integers(len(SHAPE_TYPES))]
    radius = float(rng.uniform(config.min_radius, config.max_radius))
    aspect = float(rng.uniform(0.45, 0.8)) if kind in ("rectangle", "oval") else 1.0
    angle = float(rng.uniform(0.0, 360.0))
    cx, cy = (float(rng.uniform(radius * 0.6, size - 1 - radius * 0.6)) for _ in range(2))
    color = rng.integers(0, 256, size=3)
    color[rng.integers(3)] = rng.integers(config.min_brightness, 256)
    cos, sin = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))

    # Forward map: every integer source pixel of the unrotated shape goes to its nearest destination pixel.
    reach = int(np.ceil(radius)) + 1
    u, v = _source_grid(reach)
    keep = _shape_contains(kind, u, v, radius, aspect)
    u, v = u[keep], v[keep]
    x = np.rint(cx + u * cos - v * sin).astype(np.int64)
    y = np.rint(cy + u * sin + v * cos).astype(np.int64)
    visible = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    x, y = x[visible], y[visible]
    canvas[y, x] = color

    # Outline by inverse mapping over a window around the shape (one pixel wider on each side), then
    # a pixel counts as interior when it and its four neighbours are inside: holes are never edge jaggies.
    x0, y0 = max(int(cx) - reach - 1, 0), max(int(cy) - reach - 1, 0)
    x1, y1 = min(int(cx) + reach + 3, size), min(int(cy) + reach + 3, size)
    du = np.arange(x0 - 1, x1 + 1, dtype=np.float64)[None, :] - cx
    dv = np.arange(y0 - 1, y1 + 1, dtype=np.float64)[:, None] - cy
    inside = _shape_contains(kind, du * cos + dv * sin, -du * sin + dv * cos, radius, aspect)
    interior = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    outline[y0:y1, x0:x1] |= interior
    box = (int(x.min()), int(y.min()), int(x.max()) + 1, int(y.max()) + 1) if x.size else (0, 0, 0, 0)
    return ShapeInfo(kind, tuple(int(c) for c in color), box, angle, (cx, cy), radius)


def make_sample(seed: int, index: int, config: ShapesConfig | None = None) -> ShapeSample:
    """Image `index` of the set with this seed: the same result whatever else is generated."""
    config = config or ShapesConfig()
    rng = np.random.default_rng([seed, index])
    size = config.image_size
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    outline = np.zeros((size, size), dtype=bool)
    count = int(rng.integers(config.min_shapes, config.max_shapes + 1))
    shapes = [_draw_shape(canvas, outline, rng, config) for _ in range(count)]
    hole_mask = outline & ~canvas.any(axis=2)
    return ShapeSample(canvas, hole_mask, shapes)


def generate(
    num: int,
    seed: int = TRAIN_SEED,
    config: ShapesConfig | None = None,
    start: int = 0,
    num_workers: int = 1,
) -> Iterator[ShapeSample]:
    """Samples start .. start+num-1 of the set with this seed, in order; num_workers > 1 uses processes."""
    config = config or ShapesConfig()
    if num_workers <= 1 or num < 256:
        for index in range(start, start + num):
            yield make_sample(seed, index, config)
        return
    chunk = 256
    starts = range(start, start + num, chunk)
    sizes = [min(chunk, start + num - s) for s in starts]
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        for samples in pool.map(_make_range, [seed] * len(sizes), starts, sizes, [config] * len(sizes)):
            yield from samples


def _make_range(seed: int, start: int, count: int, config: ShapesConfig) -> list[ShapeSample]:
    return [make_sample(seed, index, config) for index in range(start, start + count)]


def generate_arrays(
    num: int, seed: int = TRAIN_SEED, config: ShapesConfig | None = None, num_workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All images [N, H, W, 3] uint8 and hole masks [N, H, W] bool, for training and evaluation loops."""
    samples = list(generate(num, seed, config, num_workers=num_workers))
    return np.stack([s.image for s in samples]), np.stack([s.hole_mask for s in samples])


def to_dataset(num: int, seed: int = TRAIN_SEED, config: ShapesConfig | None = None, start: int = 0):
    """Images start .. start+num-1 as a `datasets.Dataset`: an `image` column (Image feature) and the metadata."""
    import datasets

    def rows() -> Iterator[dict[str, Any]]:
        for sample in generate(num, seed, config, start=start):
            yield {"image": sample.to_pil(), **sample.metadata()}

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "num_shapes": datasets.Value("int32"),
            "shape_types": datasets.List(datasets.Value("string")),
            "type_counts": datasets.List(datasets.Value("int32")),
            "colors": datasets.List(datasets.List(datasets.Value("int32"))),
            "boxes": datasets.List(datasets.List(datasets.Value("int32"))),
            "angles": datasets.List(datasets.Value("float32")),
            "hole_pixels": datasets.List(datasets.List(datasets.Value("int32"))),
        }
    )
    return datasets.Dataset.from_list(list(rows()), features=features)


def save_image_folder(
    output_dir: str | Path,
    num: int,
    seed: int = TRAIN_SEED,
    config: ShapesConfig | None = None,
    progress: bool = True,
    num_workers: int = 1,
) -> Path:
    """Write PNGs plus a metadata.jsonl that `datasets.load_dataset("imagefolder", data_dir=...)` reads."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(num - 1)))
    lines = []
    for index, sample in enumerate(tqdm(generate(num, seed, config, num_workers=num_workers), total=num, desc="shapes", disable=not progress)):
        name = f"{index:0{width}d}.png"
        with atomic_path(output / name) as tmp:
            sample.to_pil().save(tmp, format="PNG")
        lines.append(json.dumps({"file_name": name, **sample.metadata()}))
    atomic_write_text(output / METADATA_NAME, "\n".join(lines) + "\n")
    info = {"generator": "image_tokenizer.data.shapes", "seed": seed, "num": num, "config": asdict(config or ShapesConfig())}
    atomic_write_text(output / "shapes_info.json", json.dumps(info, indent=2) + "\n")
    return output
