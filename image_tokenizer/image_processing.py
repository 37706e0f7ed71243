"""Image I/O and preprocessing: any file, PIL image, array or tensor -> normalised model input, and back.

Conventions: numpy arrays are channels-last ([H, W], [H, W, C], [B, H, W, C]); torch tensors are
channels-first ([C, H, W], [B, C, H, W]). uint8 values are 0..255, float values are 0..1.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import WHITE, ImageTokenizerConfig, PreprocessingConfig
from .errors import ImageLoadError, InvalidImageError, option

MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # PIL's warning level: larger images are refused by default
ImageInput = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file, with an error that names the file and what is wrong with it."""
    path = Path(path)
    try:
        if not path.exists():
            raise ImageLoadError(f"{path}: no such file")
        if path.is_dir():
            raise ImageLoadError(f"{path}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes), not an image")
    except OSError as error:  # a name too long for the filesystem, a permission problem, ...
        raise ImageLoadError(f"{str(path)[:80]}: cannot be read ({error.strerror or error})") from None
    return open_image(path, str(path), max_pixels)


def open_image(source: str | os.PathLike | BinaryIO, name: str, max_pixels: int | None = None) -> Image.Image:
    """The one guarded way to decode an image: the size its header declares is checked against the pixel
    budget before any pixel is decoded, PIL's decompression-bomb warning and error become ImageLoadError, and
    the EXIF orientation is applied (`exif_transpose`, as `datasets` and transformers' `load_image` do), so a
    file, a CLI argument and a dataset cell of the same photo give the same pixels."""
    budget = max_pixels or MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our budget below decides
            with Image.open(source) as image:
                width, height = image.size
                if width * height > budget:
                    raise ImageLoadError(
                        f"{name}: declares {width}x{height} = {width * height:,} pixels, over the pixel budget of "
                        f"{budget:,} (raise it with {option('max_pixels')} if the image is genuine)"
                    )
                image.load()  # decode now: a truncated file fails here, not later inside the model
                return ImageOps.exif_transpose(image)  # a new image (a plain copy when there is no orientation)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"{name}: refused as a decompression bomb ({error})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file (PIL cannot identify its format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(f"{name}: corrupt or truncated image ({error})") from None


def decode_cell(cell: Any, max_pixels: int | None = None) -> Image.Image:
    """An undecoded datasets Image cell ({'bytes', 'path'}), a PIL image, or a path -> PIL image, within the pixel
    budget max_pixels (None: the default)."""
    if cell is None:
        raise ValueError("image is missing (None)")
    if isinstance(cell, Image.Image):
        return cell
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return open_image(io.BytesIO(cell["bytes"]), cell.get("path") or "image bytes", max_pixels)
        if cell.get("path"):
            return load_image(cell["path"], max_pixels)
        raise ValueError("image cell has neither bytes nor path")
    if isinstance(cell, str):
        return load_image(cell, max_pixels)
    raise ValueError(f"unsupported image cell of type {type(cell).__name__}")


def to_rgb(image: Image.Image, background: Sequence[int] = WHITE) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16-bit grey is rescaled (not clipped), alpha is composited."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 or image.mode != "I" else 255.0
        grey = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)).convert("RGB")
    try:
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode == "La":  # premultiplied alpha: PIL converts it only to LA
            image = image.convert("LA")
        if image.mode in ("RGBA", "LA", "PA", "RGBa"):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as error:
        raise InvalidImageError(f"PIL mode {image.mode!r} cannot be converted to RGB ({error})") from None


def _array_to_pil(array: np.ndarray, index: int) -> Image.Image:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidImageError(
            f"image {index}: numpy arrays must be [H, W], [H, W, C] or [B, H, W, C] with C in (1, 3, 4); "
            f"got shape {tuple(array.shape)}"
        )
    if array.dtype == np.uint8:
        data = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidImageError(f"image {index}: contains NaN or infinite values")
        low, high = float(array.min(initial=0)), float(array.max(initial=0))
        if low < -1e-6 or high > 1 + 1e-6:
            raise InvalidImageError(
                f"image {index}: float images must hold values in [0, 1], got [{low:.4g}, {high:.4g}]; "
                "pass uint8 for 0..255 values"
            )
        data = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    elif array.dtype == np.uint16:
        data = np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8)
    elif array.dtype == np.bool_:
        data = array.astype(np.uint8) * 255
    else:
        raise InvalidImageError(f"image {index}: unsupported dtype {array.dtype}; use uint8 (0..255) or float (0..1)")
    channels = data.shape[2]
    return Image.fromarray(np.ascontiguousarray(data[:, :, 0] if channels == 1 else data))


def _tensor_to_pil(tensor: torch.Tensor, index: int) -> Image.Image:
    tensor = _plain_tensor(tensor, f"image {index}")
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
        raise InvalidImageError(
            f"image {index}: torch tensors must be [C, H, W] or [B, C, H, W] with C in (1, 3, 4); "
            f"got shape {tuple(tensor.shape)}"
        )
    return _array_to_pil(tensor.detach().to("cpu").permute(1, 2, 0).numpy(), index)


def _plain_tensor(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """A dense, real CPU tensor numpy can read: sparse becomes dense, half and bfloat16 become float32;
    meta and complex tensors are refused by name."""
    if tensor.is_meta:
        raise InvalidImageError(f"{what}: a meta tensor holds no data")
    if tensor.is_complex():
        raise InvalidImageError(f"{what}: complex tensors are not images (dtype {tensor.dtype})")
    tensor = tensor.detach().to("cpu")
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor


def to_pil_list(images: Any) -> tuple[list[Image.Image], bool]:
    """Normalise every accepted input form to a list of PIL images; the flag says whether it was a batch."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [_as_pil(images, 0)], False
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [_array_to_pil(a, i) for i, a in enumerate(images)], True
        return [_array_to_pil(images, 0)], False
    if isinstance(images, torch.Tensor):
        images = _plain_tensor(images, "images")
        if images.ndim == 4:
            return [_tensor_to_pil(t, i) for i, t in enumerate(images)], True
        return [_tensor_to_pil(images, 0)], False
    if isinstance(images, (list, tuple)):  # an empty list is an empty batch: empty results, like [0, H, W, C] arrays
        return [_as_pil(item, i) for i, item in enumerate(images)], True
    raise InvalidImageError(
        f"unsupported image input of type {type(images).__name__}; "
        "pass a PIL image, a path, a numpy array, a torch tensor, or a list of them"
    )


def _as_pil(item: Any, index: int) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, np.ndarray):
        return _array_to_pil(item, index)
    if isinstance(item, torch.Tensor):
        return _tensor_to_pil(item, index)
    raise InvalidImageError(f"image {index}: unsupported type {type(item).__name__}")


def resize_plan(
    width: int, height: int, resolution: int, config: PreprocessingConfig, index: int = 0
) -> tuple[tuple[int, int] | None, tuple[int, int, int, int]]:
    """The configured resize policy for a width x height image: the (width, height) to resample to (None: keep
    the size) and the resolution x resolution crop box (left, top, right, bottom) after it. The one plan that
    the PIL path (resize_and_crop) and the tensor path (tensor_images) both follow."""
    mode = config.resize_mode
    if (width, height) == (resolution, resolution):
        return None, (0, 0, width, height)
    if mode == "none":
        raise InvalidImageError(
            f"image {index} is {width}x{height} but this tokenizer (resize_mode='none') needs exactly "
            f"{resolution}x{resolution}"
        )
    if mode == "resize":
        _check_resized_size(width, height, (resolution, resolution), index)
        return (resolution, resolution), (0, 0, resolution, resolution)
    size = None
    if mode == "resize_center_crop":
        scale = resolution / min(width, height)
        size = max(resolution, round(width * scale)), max(resolution, round(height * scale))
        _check_resized_size(width, height, size, index)
        width, height = size
    elif width < resolution or height < resolution:  # center_crop only
        raise InvalidImageError(
            f"image {index} is {width}x{height}, smaller than the {resolution}x{resolution} crop of this tokenizer "
            "(resize_mode='center_crop')"
        )
    left, top = (width - resolution) // 2, (height - resolution) // 2
    return size, (left, top, left + resolution, top + resolution)


def _check_resized_size(width: int, height: int, size: tuple[int, int], index: int) -> None:
    """Resizing allocates no more pixels than decoding may (MAX_IMAGE_PIXELS): a config's resolution, or a very
    long thin image, must not turn a small image into gigabytes."""
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            f"image {index} ({width}x{height}) would be resized to {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels "
            f"for this tokenizer's resolution, over the pixel budget of {MAX_IMAGE_PIXELS:,}"
        )


def resize_and_crop(image: Image.Image, resolution: int, config: PreprocessingConfig, index: int = 0) -> Image.Image:
    """Apply the configured resize policy (resize_plan) so the result is resolution x resolution."""
    size, box = resize_plan(*image.size, resolution, config, index)
    if size is not None:
        image = image.resize(size, _RESAMPLE[config.resample])
    return image if box == (0, 0, *image.size) else image.crop(box)


def check_image_size(
    width: int, height: int, config: ImageTokenizerConfig, index: int = 0, native_size: bool = False,
    max_native_pixels: int | None = None,
) -> None:
    """The size rules every input path shares: big enough for the token grid, or at native size, multiples of
    the downsampling factor within the pixel budget."""
    side, factor, min_side = config.resolution, config.downsample_factor, config.grid_size[0]
    if native_size:
        if max_native_pixels is not None and width * height > max_native_pixels:
            raise InvalidImageError(
                f"image {index} is {width}x{height} = {width * height:,} pixels, over the native-size budget of "
                f"{max_native_pixels:,} (the model's activations grow with the image); resize it, or raise "
                f"{option('max_native_pixels')} if the memory is there"
            )
        if width % factor or height % factor or width < factor or height < factor:
            raise InvalidImageError(
                f"image {index} is {width}x{height}; native_size=True needs both sides to be positive "
                f"multiples of the downsampling factor {factor}"
            )
    elif min(width, height) < min_side:
        raise InvalidImageError(
            f"image {index} is {width}x{height}, too small for the {min_side}x{min_side} token grid of this "
            f"tokenizer: each side needs at least {min_side} pixels ({side} is the trained resolution)"
        )


def prepare_image(
    image: Image.Image, config: ImageTokenizerConfig, index: int = 0, native_size: bool = False,
    max_native_pixels: int | None = None,
) -> torch.Tensor:
    """One PIL image -> the uint8 [3, H, W] pixels the model gets (before normalize): size checks, the config's
    resize policy (or the native size), 8-bit RGB. Needs only the config, so DataLoader workers can run it."""
    if image.mode == "La":  # premultiplied alpha: PIL resizes and converts it only as LA
        image = image.convert("LA")
    width, height = image.size
    check_image_size(width, height, config, index, native_size, max_native_pixels)
    if not native_size:
        image = resize_and_crop(image, config.resolution, config.preprocessing, index)
    rgb = to_rgb(image, config.preprocessing.alpha_background)
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


def on_background(image: Image.Image, config: ImageTokenizerConfig, background: Sequence[int]) -> Image.Image:
    """The image as the model takes it (config's resize policy, at its resolution) with alpha composited onto
    `background` instead of the model's own alpha_background: what evaluation gives every model, so two models
    are scored on the same pixels. Size errors are prepare_image's."""
    if image.mode == "La":  # premultiplied alpha: PIL resizes and converts it only as LA
        image = image.convert("LA")
    check_image_size(*image.size, config)
    return to_rgb(resize_and_crop(image, config.resolution, config.preprocessing), background)


def normalize(pixels: torch.Tensor, config: PreprocessingConfig) -> torch.Tensor:
    """uint8 channels-first pixels [..., 3, H, W] -> the model's normalised float input."""
    mean = torch.tensor(config.image_mean, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(config.image_std, device=pixels.device).view(3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def pil_to_tensor(image: Image.Image, config: PreprocessingConfig) -> torch.Tensor:
    """8-bit RGB PIL image -> normalised float tensor [3, H, W]."""
    return normalize(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1), config)


def postprocess(pixels: torch.Tensor, config: PreprocessingConfig, output_type: str) -> Any:
    """Normalised model output [B, 3, H, W] -> list of PIL images, uint8 array [B, H, W, 3] or float tensor in [0, 1]."""
    mean = torch.tensor(config.image_mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std, device=pixels.device).view(1, 3, 1, 1)
    unit = (pixels.float() * std + mean).clamp(0.0, 1.0)
    if output_type == "pt":
        return unit.cpu()
    array = (unit * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        return [Image.fromarray(a) for a in array]
    raise InvalidImageError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
