"""PNG grids for people: inputs beside reconstructions, or a plain grid of images."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw


def image_grid(images: Sequence[Image.Image], columns: int, scale: int = 1, gap: int = 2) -> Image.Image:
    """Tile equally sized images row by row, enlarged with nearest-neighbour scaling so pixels stay visible."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    width, height = images[0].size
    width, height = width * scale, height * scale
    rows = -(-len(images) // columns)
    canvas = Image.new("RGB", (columns * (width + gap) + gap, rows * (height + gap) + gap), (48, 48, 48))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        tile = image.convert("RGB").resize((width, height), Image.Resampling.NEAREST)
        canvas.paste(tile, (gap + column * (width + gap), gap + row * (height + gap)))
    return canvas


def side_by_side(originals: Sequence[Image.Image], reconstructions: Sequence[Image.Image], scale: int = 4) -> Image.Image:
    """Pairs (input | reconstruction), one pair per row, with a caption strip on top."""
    pairs = [image for pair in zip(originals, reconstructions) for image in pair]
    grid = image_grid(pairs, columns=2, scale=scale)
    return _captioned(grid, [(4, "input"), (grid.width // 2 + 4, "reconstruction")])


def inputs_over_reconstructions(originals: Sequence[Image.Image], reconstructions: Sequence[Image.Image], scale: int = 2) -> Image.Image:
    """Inputs in the top row, their reconstructions in the row below, with a caption strip on top."""
    grid = image_grid([*originals, *reconstructions], columns=len(originals), scale=scale)
    return _captioned(grid, [(4, "top: input    bottom: reconstruction")])


def _captioned(grid: Image.Image, captions: Sequence[tuple[int, str]]) -> Image.Image:
    """The grid below a 16-pixel strip with each caption at its x position."""
    out = Image.new("RGB", (grid.width, grid.height + 16), (48, 48, 48))
    draw = ImageDraw.Draw(out)
    for x, text in captions:
        draw.text((x, 2), text, fill=(230, 230, 230))
    out.paste(grid, (0, 16))
    return out
