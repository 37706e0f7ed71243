"""Token layouts: what an image's ids are and in which order they come, for every kind of tokenizer.

- `grid` (vq, fsq, lfq): one [h, w] grid, row-major.
- `multiscale` (VAR): [N] ids, N = sum of p*p over the scale sides p_1 < ... < p_K (the last is the grid side):
  the scales concatenated coarse to fine, row-major inside each (VAR's 1, 2, 3, 4, 5, 6, 8, 10, 13, 16: 680 ids).
- `residual` (RQ-VAE): [h, w, D], D codes per position of one shared codebook, each quantizing what the earlier ones
  left; flat, the positions row-major with the D codes of a position together, depth 0 first.
- `1d` (TiTok): [N] learned latent tokens, one sequence with no spatial order; grid_size is (1, N).

A tokenizer's layout follows from its quantizer and architecture (`ImageTokenizerConfig.layout`); config.json and
vocab.json both carry it (`to_dict`), so a language model's data pipeline can read it without this library. A flat
sequence of ids is always the per-image ids flattened in this order (`tok(images)` frames it with <boi>/<eoi>).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch

from .errors import CheckpointError, InvalidIdsError, InvalidRequestError, shorten

LAYOUT_KINDS = ("grid", "multiscale", "residual", "1d")
FIXED_LENGTH_KINDS = ("multiscale", "1d")  # one length, at the trained resolution only
MAX_SCALES = 64  # VAR uses 10 scales; sides strictly increase up to the grid side, so 64 is far above any use
MAX_DEPTH = 64  # RQ-VAE uses 4 codes per position
ORDERS = {
    "grid": "row-major",
    "multiscale": "scales coarse to fine, row-major inside each scale",
    "residual": "positions row-major, the depth codes of a position together, depth 0 first",
    "1d": "the latent tokens in order (no spatial order)",
}


@dataclass(frozen=True)
class IdLayout:
    """The shape and order of one image's ids: `grid` [h, w], `multiscale` [sum p*p], `residual` [h, w, depth] or
    `1d` [N] (grid_size (1, N))."""

    kind: str = "grid"
    grid_size: tuple[int, int] = (16, 16)  # the (finest) token grid at the trained resolution
    scales: tuple[int, ...] = ()  # multiscale: the scale sides, coarse to fine; the last is the grid side
    depth: int = 1  # residual: codes per position

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid_size", tuple(self.grid_size))
        object.__setattr__(self, "scales", tuple(self.scales))
        problem = layout_problem(self)
        if problem:
            raise ValueError(f"bad token layout: {problem}")

    @property
    def ndim(self) -> int:
        """Rank of one image's ids: 2 (grid), 1 (multiscale, 1d) or 3 (residual)."""
        return {"grid": 2, "multiscale": 1, "residual": 3, "1d": 1}[self.kind]

    @property
    def fixed_length(self) -> bool:
        """Whether an image always has the same number of ids (multiscale, 1d): no native size, no other grid."""
        return self.kind in FIXED_LENGTH_KINDS

    @property
    def shape(self) -> tuple[int, ...]:
        """One image's ids at the trained resolution: (h, w), (N,) or (h, w, depth)."""
        if self.fixed_length:
            return (self.ids_per_image,)
        return self.grid_size + ((self.depth,) if self.kind == "residual" else ())

    def shape_at(self, h: int, w: int) -> tuple[int, ...]:
        """One image's ids for an h x w token grid (a native-size image; multiscale and 1d: only their own)."""
        if self.fixed_length:
            return self.shape
        return (h, w, self.depth) if self.kind == "residual" else (h, w)

    @property
    def ids_per_image(self) -> int:
        if self.kind == "multiscale":
            return sum(side * side for side in self.scales)
        return math.prod(self.grid_size) * self.depth

    def describe(self) -> str:
        """What an image's ids are, in one sentence (model card, `info`)."""
        h, w = self.grid_size
        if self.kind == "multiscale":
            sides = ", ".join(f"{p}x{p}" for p in self.scales)
            return (f"{self.ids_per_image} ids: {len(self.scales)} scales ({sides}) concatenated coarse to fine, "
                    "row-major inside each; each scale refines what the coarser ones left")
        if self.kind == "residual":
            return (f"{h}x{w} positions x depth {self.depth} = {self.ids_per_image} ids, [h, w, depth]: each position's "
                    f"{self.depth} codes sum to its feature, depth 0 the coarsest; flat, the positions row-major with "
                    "a position's codes together")
        if self.kind == "1d":
            return f"{w} ids: one 1D sequence of learned latent tokens (TiTok), no grid"
        return f"{h * w} ids: a {h}x{w} grid, row-major"

    def to_dict(self) -> dict[str, Any]:
        """The layout as vocab.json and config.json write it."""
        data: dict[str, Any] = {"kind": self.kind}
        if self.kind == "multiscale":
            data["scales"] = list(self.scales)
        if self.kind == "residual":
            data["depth"] = self.depth
        return {**data, "shape": list(self.shape), "ids_per_image": self.ids_per_image, "order": ORDERS[self.kind]}

    # ----- ids of one image, or of a batch -----
    def shape_of_sequence(self, count: int, grid_size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """One image's shape for a flat sequence of `count` image ids (grid and residual: the trained grid, a
        larger square one for a native-size image, or grid_size=(h, w)); a wrong count is InvalidIdsError."""
        if self.kind == "1d":
            if grid_size is not None and tuple(grid_size) != self.grid_size:
                raise InvalidRequestError("grid_size applies to grid and residual tokenizers; this 1d one has "
                                          f"{self.ids_per_image} ids per image")
            if count != self.ids_per_image:
                raise InvalidIdsError(f"a 1d image holds {self.ids_per_image} ids (its latent tokens), got {count}")
            return self.shape
        if self.kind == "multiscale":
            if grid_size is not None and tuple(grid_size) != self.grid_size:
                raise InvalidRequestError(f"grid_size applies to grid and residual tokenizers; this multiscale one "
                                          f"has the fixed scales {list(self.scales)}")
            if count != self.ids_per_image:
                raise InvalidIdsError(f"a multiscale image holds {self.ids_per_image} ids ({self._scales_text()}), got {count}")
            return self.shape
        if self.kind == "residual":
            if count % self.depth:
                raise InvalidIdsError(f"a flat residual sequence holds depth {self.depth} ids per position, so its "
                                      f"length must be a multiple of {self.depth}; got {count}")
            try:
                return (*grid_for(count // self.depth, self.grid_size, grid_size), self.depth)
            except InvalidIdsError:
                h, w = grid_size or self.grid_size
                raise InvalidIdsError(f"a flat residual sequence holds {h * w * self.depth} ids ({h}x{w} positions x "
                                      f"depth {self.depth}), got {count}; pass grid_size=(h, w) for another grid") from None
        return grid_for(count, self.grid_size, grid_size)

    def check_image_shape(self, shape: tuple[int, ...]) -> None:
        """The per-image part of ids given with their shape ([N], [h, w, depth]): wrong length or depth is
        InvalidIdsError naming what was expected. Grids (and residual positions) may have any h, w."""
        if self.kind == "1d" and tuple(shape) != self.shape:
            found = shape[0] if len(shape) == 1 else f"shape {tuple(shape)}"
            raise InvalidIdsError(f"a 1d image holds {self.ids_per_image} ids (its latent tokens), got {found}")
        if self.kind == "multiscale" and tuple(shape) != self.shape:
            found = shape[0] if len(shape) == 1 else f"shape {tuple(shape)}"
            raise InvalidIdsError(f"a multiscale image holds {self.ids_per_image} ids ({self._scales_text()}), got {found}")
        if self.kind == "residual" and shape[-1] != self.depth:
            raise InvalidIdsError(f"residual ids are [h, w, {self.depth}] per image (depth {self.depth} codes per "
                                  f"position), got depth {shape[-1]} in shape {tuple(shape)}")

    def rank_error(self, shape: tuple[int, ...]) -> str:
        """The message for ids of a rank this layout does not take."""
        if self.fixed_length:
            return (f"{self.kind} ids must have rank 1 ([{self.ids_per_image}], one image) or 2 ([B, {self.ids_per_image}], "
                    f"a batch); got shape {tuple(shape)}")
        if self.kind == "residual":
            return (f"residual ids must have rank 1 (flat sequence), 3 ([h, w, {self.depth}]) or 4 ([B, h, w, "
                    f"{self.depth}] batch); got shape {tuple(shape)}")
        return f"ids must have rank 1 (flat sequence), 2 ([h, w] grid) or 3 ([B, h, w] batch); got shape {tuple(shape)}"

    def row_lengths(self, shape: tuple[int, ...]) -> list[int]:
        """Lengths of the rows of one image's flat ids (where <eol> goes): a grid's rows, each scale's rows, or a
        residual row of positions with their codes."""
        if self.kind == "multiscale":
            return [side for side in self.scales for _ in range(side)]
        if self.kind == "1d":
            return [self.ids_per_image]  # one row: the sequence has no spatial rows
        return [math.prod(shape[1:])] * shape[0]

    # ----- scales -----
    def split_scales(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Multiscale ids [..., N] -> one [..., p, p] grid per scale, coarse to fine."""
        self._require_multiscale("split_scales")
        if not isinstance(ids, torch.Tensor) or ids.ndim < 1 or ids.shape[-1] != self.ids_per_image:
            found = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise InvalidIdsError(f"split_scales takes ids [..., {self.ids_per_image}] ({self._scales_text()}), got {found}")
        parts = torch.split(ids, [side * side for side in self.scales], dim=-1)
        return [part.reshape(*ids.shape[:-1], side, side) for part, side in zip(parts, self.scales)]

    def join_scales(self, grids: list[torch.Tensor]) -> torch.Tensor:
        """One [..., p, p] grid per scale, coarse to fine -> ids [..., N] (the inverse of split_scales)."""
        self._require_multiscale("join_scales")
        shapes = [tuple(g.shape[-2:]) if isinstance(g, torch.Tensor) and g.ndim >= 2 else None for g in grids]
        expected = [(side, side) for side in self.scales]
        if shapes != expected or len({tuple(g.shape[:-2]) for g in grids}) != 1:
            raise InvalidIdsError(f"join_scales takes {len(self.scales)} grids [..., p, p] for p in {list(self.scales)}, "
                                  f"alike in their leading dimensions; got {shorten(shapes)}")
        return torch.cat([g.reshape(*g.shape[:-2], -1) for g in grids], dim=-1)

    def _require_multiscale(self, what: str) -> None:
        if self.kind != "multiscale":
            raise InvalidRequestError(f"{what} applies to multiscale tokenizers; this one's layout is {self.kind!r}")

    def _scales_text(self) -> str:
        return f"scales {', '.join(map(str, self.scales))} concatenated coarse to fine"


def layout_problem(layout: IdLayout) -> str | None:
    """What is wrong with a layout's fields (None when nothing): the kind, the scales or the depth."""
    if layout.kind not in LAYOUT_KINDS:
        return f"kind must be one of {LAYOUT_KINDS}, got {shorten(layout.kind)}"
    grid = layout.grid_size
    if len(grid) != 2 or not all(_is_int(v) and v >= 1 for v in grid):
        return f"grid_size must be two positive integers, got {shorten(grid)}"
    if layout.kind != "multiscale" and layout.scales:
        return f"scales apply to the multiscale layout only, not {layout.kind!r}"
    if layout.kind != "residual" and layout.depth != 1:
        return f"depth applies to the residual layout only, not {layout.kind!r}"
    if layout.kind == "multiscale":
        return scales_problem(layout.scales, grid)
    if layout.kind == "1d" and grid[0] != 1:
        return f"a 1d layout's grid_size is (1, N), got {shorten(grid)}"
    if layout.kind == "residual" and not (_is_int(layout.depth) and 1 <= layout.depth <= MAX_DEPTH):
        return f"depth must be an integer from 1 to {MAX_DEPTH}, got {shorten(layout.depth)}"
    return None


def scales_problem(scales: Any, grid_size: tuple[int, int] | None = None) -> str | None:
    """What is wrong with a scale schedule: 2 to MAX_SCALES strictly increasing positive integers, the last equal
    to the (square) grid side when the grid is known."""
    if not isinstance(scales, (list, tuple)) or not 2 <= len(scales) <= MAX_SCALES:
        return f"scales must be a list of 2 to {MAX_SCALES} scale sides, got {shorten(scales)}"
    if not all(_is_int(p) and p >= 1 for p in scales) or any(a >= b for a, b in pairwise(scales)):
        return f"scales must be strictly increasing positive integers (coarse to fine), got {shorten(list(scales))}"
    if grid_size is not None and (grid_size[0] != grid_size[1] or scales[-1] != grid_size[0]):
        return (f"the last scale {scales[-1]} must be the side of the token grid {grid_size[0]}x{grid_size[1]} "
                "(resolution / downsampling factor), which must be square")
    return None


def layout_from_dict(data: Any, grid_size: tuple[int, int], where: str) -> IdLayout:
    """A layout as vocab.json writes it -> IdLayout; anything malformed is CheckpointError naming `where`. Its
    `shape` and `ids_per_image`, when present, must agree with the kind, scales and depth."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: field 'layout' must be a JSON object, got {shorten(data)}")
    kind, scales, depth = data.get("kind"), data.get("scales", []), data.get("depth", 1)
    if not isinstance(scales, list) or len(scales) > MAX_SCALES:
        raise CheckpointError(f"{where}: layout.scales must be a list of at most {MAX_SCALES} sides, got {shorten(scales)}")
    try:
        layout = IdLayout(kind, tuple(grid_size), tuple(scales), depth)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: layout: {error}") from None
    for name, value in (("shape", list(layout.shape)), ("ids_per_image", layout.ids_per_image)):
        if name in data and data[name] != value:
            raise CheckpointError(f"{where}: layout.{name} {shorten(data[name])} disagrees with its kind, scales and "
                                  f"depth, which give {value}")
    return layout


def grid_for(count: int, trained: tuple[int, int], grid_size: tuple[int, int] | None) -> tuple[int, int]:
    """The grid of a flat sequence of `count` image ids: given, the trained one,
    or a larger square one (a native-size image); a shorter sequence is an error, as it is more likely cut off
    than a smaller image."""
    if grid_size is not None:
        h, w = grid_size
        if h * w != count:
            raise InvalidIdsError(f"grid_size {h}x{w} needs {h * w} image ids, got {count}")
        return h, w
    if count == trained[0] * trained[1]:
        return trained
    side = math.isqrt(count)
    if side * side == count and count > trained[0] * trained[1]:
        return side, side
    raise InvalidIdsError(
        f"a flat id sequence must hold {trained[0] * trained[1]} image tokens ({trained[0]}x{trained[1]} grid), got {count}; "
        "pass grid_size=(h, w) for another grid"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
