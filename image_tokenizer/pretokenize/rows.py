"""The rows of a pre-tokenized dataset, defined once for every path (map, DataLoader, streaming).

Output columns: `input_ids` (codebook ids flattened in the tokenizer's layout order, layouts.py: a grid row-major,
a multiscale tokenizer's scales concatenated coarse to fine, a residual one's [h, w, depth] with depth fastest; in
the smallest unsigned type that holds the codebook: uint16 up to 65,536 codes), `grid_h`, `grid_w` (the finest
token grid), `source_index` (the input row it came from), optionally
`flipped` (and `node_rank` on a node-sharded run), and every non-image column passed through. A row whose
image cannot be read carries its error in a temporary column until it is dropped (skip_bad) or stops the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..errors import ImageTokenizerError, PretokenizeError
from ..image_processing import decode_cell, prepare_image

if TYPE_CHECKING:
    from ..layouts import IdLayout
    from ..tokenizer import ImageTokenizer

ERROR_COLUMN = "__pretokenize_error"
SOURCE_INDEX = "source_index"  # the input row an output row came from: which file, for an image folder
NODE_RANK = "node_rank"  # the node that wrote a row, on a node-sharded run
INFO_NAME = "pretokenize_info.json"  # the summary; written last, so its presence means the output is complete
STATE_NAME = "pretokenize_state.json"  # a streaming run's settings, to resume only the same run
REPORT_NAME = "skipped_rows.json"  # the rows skip_bad dropped, and why
SHARDING_NAME = "sharding.json"  # a node-sharded output's node count


def ids_dtype(codebook_size: int) -> str:
    """Smallest unsigned integer type that holds every id 0..codebook_size-1."""
    if codebook_size <= 2**8:
        return "uint8"
    if codebook_size <= 2**16:
        return "uint16"
    return "uint32"


def cell_file(cell: Any) -> str:
    """The file an image cell came from ('' for bytes without a path), so a message can name it."""
    if isinstance(cell, dict):
        return str(cell.get("path") or "")
    return str(cell) if isinstance(cell, (str, os.PathLike)) else ""


def row_name(index: int, cell: Any) -> str:
    """`row 17 (photos/tiny.png)`: the dataset row, and its file when it has one."""
    name = cell_file(cell)
    return f"row {index} ({name})" if name else f"row {index}"


def decode_error(index: int, error: Exception, cell: Any = None) -> str:
    """Why row `index` has no image, as the report lists it."""
    return f"{row_name(index, cell)}: cannot decode image ({type(error).__name__}: {error})"


def keep_or_stop(message: str, skip_bad: bool) -> str:
    """A row whose image cannot be used is kept in the report with skip_bad, else it stops the run."""
    if not skip_bad:
        raise PretokenizeError(message + "; pass skip_bad=True (--skip-bad) to skip such rows") from None
    return message


@dataclass
class PreparedRows:
    """The model's uint8 pixels [n, 3, H, W] of the rows of a batch that could be used (and their mirrors), and
    why each other row could not (position in the batch -> message naming the dataset row and the file)."""

    indices: list[int] = field(default_factory=list)  # the dataset row at each position of the batch
    positions: list[int] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    mirrored: torch.Tensor | None = None
    errors: dict[int, str] = field(default_factory=dict)

    def pin_memory(self) -> PreparedRows:
        """Called by the DataLoader (pin_memory=True on a GPU): page-locked pixels copy to the device asynchronously."""
        self.pixels = None if self.pixels is None else self.pixels.pin_memory()
        self.mirrored = None if self.mirrored is None else self.mirrored.pin_memory()
        return self


def prepare_cells(cells: list, indices: list[int], config: Any, flip: bool, max_pixels: int | None = None) -> PreparedRows:
    """Decode and prepare every image of a batch on its own, so one image's failure (undecodable, too small,
    over the pixel budget max_pixels, a mode that has no RGB) is that row's error, never the batch's. Needs only
    the config, so DataLoader workers run it too."""
    prepared, pixels, mirrored = PreparedRows(indices=list(indices)), [], []
    for position, (index, cell) in enumerate(zip(indices, cells)):
        try:
            image = decode_cell(cell, max_pixels)
        except Exception as error:  # noqa: BLE001  (PIL raises many types for bad bytes)
            prepared.errors[position] = decode_error(index, error, cell)
            continue
        try:
            image_pixels = prepare_image(image, config, index)
            mirror = prepare_image(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), config, index) if flip else None
        except ImageTokenizerError as error:
            prepared.errors[position] = f"{row_name(index, cell)}: {error}"
            continue
        prepared.positions.append(position)
        pixels.append(image_pixels)
        mirrored.append(mirror)
    if pixels:
        prepared.pixels = torch.stack(pixels)
        prepared.mirrored = torch.stack(mirrored) if flip else None
    return prepared


class Tokenize:
    """The batched map function (a class, so datasets can pickle it into worker processes)."""

    def __init__(self, tokenizer: ImageTokenizer, image_column: str, flip: bool, skip_bad: bool, device: str | None, dtype: str,
                 max_pixels: int | None = None):
        self.tokenizer, self.image_column, self.flip, self.skip_bad = tokenizer, image_column, flip, skip_bad
        self.device, self.dtype, self.max_pixels = device, dtype, max_pixels
        self.parent_pid = os.getpid()

    def __call__(self, batch: dict[str, list], indices: list[int], rank: int | None = None) -> dict[str, list]:
        if os.getpid() != self.parent_pid and torch.get_num_threads() != 1:
            # A forked worker must not reuse the parent's OpenMP pool (it can deadlock); one thread per
            # process is also the right split when num_proc processes share the cores.
            torch.set_num_threads(1)
        device = self.device
        if device == "cuda" and rank is not None and torch.cuda.is_available():
            device = f"cuda:{rank % torch.cuda.device_count()}"
        if device is not None and str(self.tokenizer.device) != device:
            self.tokenizer.to(device)
        prepared = prepare_cells(batch[self.image_column], indices, self.tokenizer.config, self.flip, self.max_pixels)
        errors = {position: keep_or_stop(message, self.skip_bad) for position, message in prepared.errors.items()}
        grids, flipped = {}, {}
        if prepared.positions:
            grids = dict(zip(prepared.positions, self.tokenizer.encode(prepared.pixels).numpy()))
            if self.flip:
                flipped = dict(zip(prepared.positions, self.tokenizer.encode(prepared.mirrored).numpy()))
        return assemble_rows(batch, indices, self.image_column, grids, flipped if self.flip else None, errors, self.dtype,
                             self.tokenizer.layout)


class AttachIds:
    """The map function of the DataLoader path: rows get the ids encoded beforehand (loader.encode_rows)."""

    def __init__(self, ids: np.ndarray, mirrored: np.ndarray | None, errors: dict[int, str], grid: tuple[int, ...],
                 image_column: str, dtype: str, layout: IdLayout | None = None):
        self.ids, self.mirrored, self.errors, self.grid = ids, mirrored, errors, grid  # grid: one image's ids' shape
        self.image_column, self.dtype, self.layout = image_column, dtype, layout

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        good = {row: index for row, index in enumerate(indices) if index not in self.errors}
        grids = {row: self.ids[index].reshape(self.grid) for row, index in good.items()}
        flipped = None if self.mirrored is None else {row: self.mirrored[index].reshape(self.grid) for row, index in good.items()}
        errors = {row: self.errors[index] for row, index in enumerate(indices) if index in self.errors}
        return assemble_rows(batch, indices, self.image_column, grids, flipped, errors, self.dtype, self.layout)


def assemble_rows(
    batch: dict[str, list], indices: list[int], image_column: str, grids: dict[int, np.ndarray],
    flipped: dict[int, np.ndarray] | None, errors: dict[int, str], dtype: str, layout: IdLayout | None = None,
) -> dict[str, list]:
    """Output rows for a batch of input rows: the ids of each (and its mirror after it when flipped is not
    None), the passthrough columns, and the error of a row that could not be decoded (filtered out later).
    Ids come in the layout's shape ([h, w], [N] or [h, w, depth]; layout None: a grid); grid_h, grid_w are the
    finest grid (a multiscale image's last scale)."""
    out: dict[str, list] = {key: [] for key in batch if key != image_column}
    out.update(input_ids=[], grid_h=[], grid_w=[], **({"flipped": []} if flipped is not None else {}), **{ERROR_COLUMN: []})
    tracked = SOURCE_INDEX not in batch  # the input row each output row came from (streaming adds it earlier)
    if tracked:
        out[SOURCE_INDEX] = []
    for row in range(len(indices)):
        variants = [(grids.get(row), False)] + ([(flipped.get(row), True)] if flipped is not None else [])
        for grid, is_flipped in variants:
            for key in batch:
                if key != image_column:
                    out[key].append(batch[key][row])
            if grid is None:
                out["input_ids"].append(np.zeros(0, dtype=dtype))
                out["grid_h"].append(0)
                out["grid_w"].append(0)
            else:
                if layout is not None and layout.kind == "multiscale":
                    h, w = layout.grid_size  # the finest scale's grid
                else:
                    h, w = grid.shape[:2] if grid.ndim > 1 else (1, grid.shape[0])  # a 1d row: its N ids, 1 x N
                out["input_ids"].append(grid.reshape(-1).astype(dtype))
                out["grid_h"].append(h)
                out["grid_w"].append(w)
            if flipped is not None:
                out["flipped"].append(is_flipped)
            if tracked:
                out[SOURCE_INDEX].append(indices[row])
            out[ERROR_COLUMN].append(errors.get(row, ""))
    return out


def token_features(source: Any, image_column: str, flip: bool, dtype: str) -> Any:
    """The output schema: every source column but the image, then the ids, grid, source row, mirror flag
    and the (temporary) error column."""
    import datasets

    passthrough = {k: v for k, v in source.items() if k != image_column}
    return datasets.Features(
        {
            **passthrough,
            "input_ids": datasets.List(datasets.Value(dtype)),
            "grid_h": datasets.Value("int32"),
            "grid_w": datasets.Value("int32"),
            **({SOURCE_INDEX: datasets.Value("int64")} if SOURCE_INDEX not in passthrough else {}),
            **({"flipped": datasets.Value("bool")} if flip else {}),
            ERROR_COLUMN: datasets.Value("string"),
        }
    )


def without_bad_rows(mapped: Any) -> tuple[Any, list[str]]:
    """Drop the rows whose image could not be read (skip_bad) and the error column; returns their messages."""
    bad = [message for message in mapped[ERROR_COLUMN] if message]
    if bad:
        mapped = mapped.filter(lambda message: message == "", input_columns=ERROR_COLUMN)
    return mapped.remove_columns(ERROR_COLUMN), bad


def undecoded_images(dataset: Any, image_column: str) -> Any:
    """The dataset with its image column left as bytes/paths: each path decodes per row, through decode_cell."""
    import datasets

    features = getattr(dataset, "features", None) or {}
    if isinstance(features.get(image_column), datasets.Image):
        return dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset
