"""ImageTokenizer: a VQGAN with the API of a text tokenizer (encode, decode, __call__, vocabulary, save/load/push)."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchEncoding

from . import text_vocab
from .config import CONFIG_NAME, FILES_SHA256, ImageTokenizerConfig
from .devices import check_device, model_dtype
from .errors import CheckpointError, InvalidIdsError, InvalidImageError, InvalidRequestError
from .fileio import atomic_write_text, check_state_dict, load_tensors, read_json_object, save_tensors
from .hub import HubMixin
from .image_processing import normalize, postprocess, prepare_image, to_pil_list
from .inputs import as_id_tensor
from .model_card import CARD_NAME, load_card_info, render_tokenizer_card
from .modeling import VQModel
from .sequences import SequenceOptions, empty_sequences, grid_for, image_span, to_sequences
from .tensor_images import as_pixel_batch, pixel_batch_to_input
from .text_vocab import ImageTextMapping
from .vocab import VOCAB_NAME, ImageVocab

WEIGHTS_NAME = "model.safetensors"
CODEBOOK_NAME = "codebook.safetensors"
CODEBOOK_TENSOR = "codebook"
SAVED_FILES = [CONFIG_NAME, WEIGHTS_NAME, CODEBOOK_NAME, VOCAB_NAME, CARD_NAME]
CPU_MICRO_BATCH = 8  # images per encoder call on CPU: the model dominates there, and small batches keep memory low
ACCELERATOR_MICRO_BATCH_PIXELS = 2**20  # on a GPU: 256 images of 64x64 (16 of 256x256) per call keep it busy
AUTO_TOKENIZER_KWARGS = {"_from_auto", "_commit_hash", "trust_remote_code", "code_revision", "use_fast", "subfolder"}
MAX_NATIVE_PIXELS = 2048 * 2048  # native_size encodes keep the image's size, and the model's memory grows with it


class ImageTokenizer(HubMixin):
    """Turns images into grids of codebook ids and back.

    Ids 0..K-1 are codebook indices in row-major order; `<boi>`, `<eoi>`, `<pad>` (and any class tokens)
    follow at K, K+1, ... . The encoder always runs on fixed-size micro-batches (zero-padded), so an image
    gets the same ids whatever batch it arrives in: measured on CPU, batch sizes 1, 3 and 7 give encoder
    outputs that differ from batch 8 in the 6th digit, which can flip a near-tie between two codes. The
    micro-batch is fixed per device (see micro_batch_for); ids on another device or dtype may differ on near-ties.
    """

    hub_files = tuple(SAVED_FILES)
    hub_commit_message = "Upload image tokenizer"

    def __init__(
        self,
        config: ImageTokenizerConfig | None = None,
        model: VQModel | None = None,
        vocab: ImageVocab | None = None,
        card_info: dict[str, Any] | None = None,
        micro_batch_size: int | None = None,
    ):
        self.config = config or ImageTokenizerConfig()
        # channels_last weights, as the inputs and every activation (oneDNN and cuDNN convolutions run faster on it)
        self.model = (model or VQModel(self.config)).eval().to(memory_format=torch.channels_last)
        self.vocab = vocab or ImageVocab(self.config.quantizer.codebook_size, self.config.grid_size)
        if self.vocab.codebook_size != self.config.quantizer.codebook_size:
            raise CheckpointError(
                f"vocabulary has {self.vocab.codebook_size} image tokens but the config's codebook has "
                f"{self.config.quantizer.codebook_size}"
            )
        if micro_batch_size is not None and (not isinstance(micro_batch_size, int) or micro_batch_size < 1):
            raise InvalidRequestError(f"micro_batch_size must be a positive integer or None (per device), got {micro_batch_size!r}")
        self.card_info = dict(card_info or {})
        self.micro_batch_size = micro_batch_size  # None: chosen per device by micro_batch_for
        self._compiled: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}  # filled by compile()

    # ----- vocabulary, as on a text tokenizer -----
    @property
    def vocab_size(self) -> int:
        """Number of image tokens (the codebook size K), without special tokens, as `vocab_size` in transformers."""
        return self.vocab.codebook_size

    def __len__(self) -> int:
        """Full vocabulary size including special and class tokens."""
        return len(self.vocab)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.config.grid_size

    @property
    def boi_token_id(self) -> int:
        return self.vocab.boi_token_id

    @property
    def eoi_token_id(self) -> int:
        return self.vocab.eoi_token_id

    @property
    def pad_token_id(self) -> int:
        return self.vocab.pad_token_id

    @property
    def all_special_ids(self) -> list[int]:
        return self.vocab.all_special_ids

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self.vocab.special_tokens + self.vocab.class_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        return self.vocab.convert_ids_to_tokens(ids)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        return self.vocab.convert_tokens_to_ids(tokens)

    def get_vocab(self) -> dict[str, int]:
        return self.vocab.get_vocab()

    @property
    def codebook(self) -> torch.Tensor:
        """The K x D code vectors as used for lookup (l2-normalised when the config says so)."""
        return self.model.quantizer.effective_codebook().detach().clone()

    # ----- image tokens inside a text model -----
    def extend_text_tokenizer(self, text_tokenizer: Any, add_eol: bool = False) -> ImageTextMapping:
        """Add <img_xxxxx>, <boi>, <eoi> (and <eol>) to a transformers tokenizer; returns the id mapping."""
        return text_vocab.extend_text_tokenizer(self, text_tokenizer, add_eol=add_eol)

    def to_text_ids(self, ids: Any, mapping: ImageTextMapping, add_boundaries: bool = True) -> torch.Tensor:
        """One [h, w] grid of image ids -> text-vocab ids (<boi> ... <eoi>, <eol> after each row if mapped)."""
        return text_vocab.to_text_ids(ids, mapping, add_boundaries)

    def from_text_ids(self, text_ids: Any, mapping: ImageTextMapping, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The image span of a text-id sequence -> [h, w] image ids ([B, L] -> [B, h, w]); non-image ids are a
        clear error. Another grid than the trained one: the square one, or grid_size=(h, w)."""
        return text_vocab.from_text_ids(text_ids, mapping, self.grid_size, grid_size)

    # ----- device -----
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the encoder and decoder run in; the quantizer (projections and distances) stays float32."""
        return self.model.encoder.conv_in.weight.dtype

    def to(self, device: str | torch.device | torch.dtype | None = None, dtype: torch.dtype | str | None = None) -> ImageTokenizer:
        """Move to a device and/or run the encoder and decoder in float32, bfloat16 or float16 (GPU); ids are
        chosen in float32 whatever the dtype, so only near-ties can differ from float32 weights. dtype may be
        named as transformers does ("bfloat16"; "auto" keeps the current one)."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        dtype = model_dtype(dtype)
        if device is not None:
            device = check_device(device)
            self.model.to(device)  # keeps the weights' channels_last layout
        if dtype is not None:
            if dtype == torch.float16 and self.device.type == "cpu":
                raise InvalidRequestError("float16 convolutions are slow or missing on CPU; use torch.bfloat16 there, or move to a GPU first")
            for part in (self.model.encoder, self.model.decoder):
                if part is not None:
                    part.to(dtype)
        return self

    def micro_batch_for(self, height: int, width: int) -> int:
        """Images per model call for inputs of this size: micro_batch_size if set, else 8 on CPU and a
        2**20-pixel budget on a GPU (256 at 64x64). Fixed per device and size, so ids never depend on how a
        caller batches."""
        if self.micro_batch_size is not None:
            return self.micro_batch_size
        if self.device.type == "cpu":
            return CPU_MICRO_BATCH
        return max(1, ACCELERATOR_MICRO_BATCH_PIXELS // (height * width))

    def compile(self, force: bool = False, **compile_kwargs: Any) -> ImageTokenizer:
        """Run encoding and decoding through `torch.compile` (keywords go to it, e.g. mode="max-autotune").
        Micro-batches are padded to a fixed size, decoding's too, so each image size compiles once. Call it after
        moving to the device: on a CPU it only warns, unless force=True, because compiled calls measured slower
        than eager there and the first call took minutes (benchmarks/results/compile_cpu_*.md)."""
        if self.device.type == "cpu" and not force:
            warnings.warn("ImageTokenizer.compile() does nothing on a CPU, where compiled encoding and decoding measured "
                          "slower than eager (benchmarks/results/compile_cpu_*.md); compile(force=True) compiles anyway",
                          stacklevel=2)
            return self
        self._compiled = {name: torch.compile(getattr(self.model, name), dynamic=False, **compile_kwargs)
                          for name in ("encode_ids", "decode_ids")}
        return self

    @property
    def compiled(self) -> bool:
        return bool(self._compiled)

    def _model_fn(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return self._compiled.get(name) or getattr(self.model, name)

    # ----- preprocessing -----
    def preprocess(
        self, images: Any, native_size: bool = False, max_native_pixels: int = MAX_NATIVE_PIXELS
    ) -> tuple[list[torch.Tensor], bool]:
        """Images in any accepted form -> list of normalised [3, H, W] tensors, and whether the input was a batch."""
        pils, is_batch = to_pil_list(images)
        config = self.config
        tensors = [normalize(prepare_image(image, config, index, native_size, max_native_pixels), config.preprocessing)
                   for index, image in enumerate(pils)]
        return tensors, is_batch

    def _run_micro_batches(
        self, fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, pad: bool = True
    ) -> torch.Tensor:
        """Apply fn on micro-batches (micro_batch_for the images' size: pixels [B, 3, H, W], or id grids [B, h, w]
        of images h and w times the downsampling factor). With pad, the last one is zero-padded to full size:
        CPU and GPU kernels change algorithm with the batch size, and ids must not change with it."""
        scale = 1 if inputs.ndim == 4 else self.config.downsample_factor
        size = self.micro_batch_for(inputs.shape[-2] * scale, inputs.shape[-1] * scale)
        outputs = []
        for start in range(0, inputs.shape[0], size):
            chunk = inputs[start : start + size]
            count = chunk.shape[0]
            if pad and count < size:
                padding = chunk.new_zeros((size - count, *chunk.shape[1:]))
                chunk = torch.cat([chunk, padding])
            if chunk.ndim == 4:
                # Pixels go in as channels_last, every micro-batch alike (same kernels, same ids): oneDNN and
                # cuDNN convolutions run faster on it (benchmarks/results/pretokenize_cpu.md).
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            outputs.append(fn(chunk)[:count])
        return torch.cat(outputs)

    # ----- encode / decode -----
    @torch.inference_mode()
    def encode(
        self, images: Any, native_size: bool = False, max_native_pixels: int = MAX_NATIVE_PIXELS
    ) -> torch.Tensor | list[torch.Tensor]:
        """Image(s) -> LongTensor ids [h, w] for one image, [B, h, w] for a list or batch.

        With native_size=True, images whose sides are multiples of the downsampling factor are encoded
        without resizing; a batch of different sizes then returns a list of [h_i, w_i] tensors. Arrays and
        tensors of pixels go to the device as one batch without PIL (tensor_images.py).
        """
        batch = self._pixel_batch(images, native_size, max_native_pixels)
        if batch is not None:
            pixels, is_batch = batch
            ids = self._run_micro_batches(self._model_fn("encode_ids"), pixels).cpu()
            return ids if is_batch else ids[0]
        tensors, is_batch = self.preprocess(images, native_size=native_size, max_native_pixels=max_native_pixels)
        results: list[torch.Tensor | None] = [None] * len(tensors)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, tensor in enumerate(tensors):
            groups.setdefault(tuple(tensor.shape), []).append(index)
        for indices in groups.values():
            pixels = torch.stack([tensors[i] for i in indices]).to(self.device)
            ids = self._run_micro_batches(self._model_fn("encode_ids"), pixels).cpu()
            for i, grid in zip(indices, ids):
                results[i] = grid
        if not is_batch:
            return results[0]
        if not results:
            return torch.empty((0, *self.grid_size), dtype=torch.long)  # an empty batch: empty results
        if len(groups) == 1:
            return torch.stack(results)
        return results

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels [B, 3, H, W] (what `preprocess` returns, stacked) -> ids [B, h, w], on the same
        fixed micro-batches as `encode`, so the ids are the same."""
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InvalidImageError(f"encode_pixels expects a [B, 3, H, W] tensor, got {getattr(pixels, 'shape', type(pixels))}")
        if pixels.shape[0] == 0:
            h, w = pixels.shape[2] // self.config.downsample_factor, pixels.shape[3] // self.config.downsample_factor
            return torch.empty((0, h, w), dtype=torch.long)
        return self._run_micro_batches(self._model_fn("encode_ids"), pixels.float().to(self.device)).cpu()

    def _pixel_batch(self, images: Any, native_size: bool, max_native_pixels: int) -> tuple[torch.Tensor, bool] | None:
        """Arrays and tensors of pixels -> normalised model input on the device, or None for the PIL path."""
        batch = as_pixel_batch(images, self.device)
        if batch is None:
            return None
        pixels, is_batch = batch
        model_input = pixel_batch_to_input(pixels, self.config, native_size, max_native_pixels)
        return None if model_input is None else (model_input, is_batch)

    def decode(
        self, ids: Any, output_type: str = "pil", skip_special_tokens: bool = True, grid_size: tuple[int, int] | None = None
    ) -> Any:
        """Ids -> image(s). Accepts a grid [h, w], a batch [B, h, w], or one flat sequence [h*w] (specials
        such as <boi>/<eoi>/<pad> are stripped first when skip_special_tokens). One image for a single grid,
        a list (pil) or batched array/tensor (np/pt) for a batch."""
        grids, is_batch = self._ids_to_grids(ids, skip_special_tokens, grid_size=grid_size)
        images = self._decode_grids(grids, output_type)
        if is_batch:
            return images
        return images[0]

    def batch_decode(
        self, sequences: Any, output_type: str = "pil", skip_special_tokens: bool = True,
        grid_size: tuple[int, int] | None = None,
    ) -> Any:
        """Several flat sequences (e.g. `input_ids` from __call__ or a prior's output) -> images. With
        skip_special_tokens, only the ids between <boi> and <eoi> count (a class token before <boi> goes too);
        a grid other than the trained one is the square one, or grid_size=(h, w)."""
        if not isinstance(sequences, (list, tuple, torch.Tensor, np.ndarray)):
            raise InvalidIdsError(f"batch_decode expects a batch of id sequences, got {type(sequences).__name__}")
        if isinstance(sequences, (torch.Tensor, np.ndarray)):
            if sequences.ndim != 2:
                raise InvalidIdsError(f"batch_decode expects [B, L] sequences, got shape {tuple(sequences.shape)}")
            sequences = list(sequences)
        grids = [self._ids_to_grids(seq, skip_special_tokens, require_flat=True, grid_size=grid_size)[0] for seq in sequences]
        if len({g.shape for g in grids}) > 1:
            return [self._decode_grids(g, output_type)[0] for g in grids]  # native-size images of several sizes
        empty = torch.empty((0, *self.grid_size), dtype=torch.long)
        return self._decode_grids(torch.cat(grids) if grids else empty, output_type)

    @torch.inference_mode()
    def _decode_grids(self, grids: torch.Tensor, output_type: str) -> Any:
        if output_type not in ("pil", "np", "pt"):
            raise InvalidImageError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if grids.shape[0] == 0:
            h, w = grids.shape[1] * self.config.downsample_factor, grids.shape[2] * self.config.downsample_factor
            return postprocess(torch.empty((0, 3, h, w)), self.config.preprocessing, output_type)
        # Decoding needs no padding (pixel values may differ in the last float bit across batch sizes, ids
        # cannot), except compiled, where a fixed shape means one compilation.
        pixels = self._run_micro_batches(self._model_fn("decode_ids"), grids.to(self.device), pad=self.compiled)
        return postprocess(pixels, self.config.preprocessing, output_type)

    def _ids_to_grids(
        self, ids: Any, skip_special_tokens: bool, require_flat: bool = False, grid_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, bool]:
        """Validate ids (dtype, rank, range) and shape them into [B, h, w]; the flag says whether it was a batch."""
        tensor = as_id_tensor(ids)
        if tensor.ndim == 3 and tensor.shape[0] == 0 and not require_flat:
            return tensor, True  # an empty batch: empty results
        if tensor.numel() == 0:
            raise InvalidIdsError("got an empty id sequence")
        if require_flat and tensor.ndim != 1:
            raise InvalidIdsError(f"each sequence must be 1-D, got shape {tuple(tensor.shape)}")
        if tensor.ndim == 1:
            if skip_special_tokens:
                tensor = image_span(tensor, self.boi_token_id, self.eoi_token_id, self.vocab_size, len(self))
            h, w = grid_for(tensor.numel(), self.grid_size, grid_size)
            self._check_range(tensor)
            return tensor.reshape(1, h, w), False
        if tensor.ndim not in (2, 3):
            raise InvalidIdsError(
                f"ids must have rank 1 (flat sequence), 2 ([h, w] grid) or 3 ([B, h, w] batch); got shape {tuple(tensor.shape)}"
            )
        self._check_range(tensor)
        if tensor.ndim == 2:
            return tensor.unsqueeze(0), False
        return tensor, True

    def _check_range(self, tensor: torch.Tensor) -> None:
        bad = (tensor < 0) | (tensor >= self.vocab_size)
        if bad.any():
            position = tuple(int(i) for i in torch.nonzero(bad)[0])
            value = int(tensor[position])
            what = "negative" if value < 0 else ("a special token, not an image token" if value < len(self) else "out of range")
            raise InvalidIdsError(
                f"id {value} at position {position} is {what}: image token ids are 0..{self.vocab_size - 1} "
                f"({int(bad.sum())} bad id(s) in all)"
            )

    # ----- text-tokenizer style call -----
    def __call__(
        self,
        images: Any,
        return_tensors: str | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_attention_mask: bool = True,
        native_size: bool = False,
    ) -> BatchEncoding:
        """Images -> BatchEncoding with `input_ids` ([<boi>] + h*w ids + [<eoi>]) and `attention_mask`, per image.
        The keywords are a transformers tokenizer's (image_tokenizer.sequences)."""
        options = SequenceOptions(add_special_tokens, padding, truncation, max_length, return_attention_mask, return_tensors)
        encoded = self.encode(images, native_size=native_size)
        grids = [encoded] if isinstance(encoded, torch.Tensor) and encoded.ndim == 2 else list(encoded)
        if not grids:
            return BatchEncoding(empty_sequences(options, math.prod(self.grid_size)), tensor_type=return_tensors)
        data = to_sequences(grids, options, self.boi_token_id, self.eoi_token_id, self.pad_token_id, self.model_max_length)
        return BatchEncoding(data, tensor_type=return_tensors)

    @property
    def model_max_length(self) -> int:
        """Longest sequence of the trained grid: <boi> + h*w ids + <eoi>."""
        return math.prod(self.grid_size) + 2

    @property
    def bos_token_id(self) -> int:
        return self.boi_token_id

    @property
    def eos_token_id(self) -> int:
        return self.eoi_token_id

    @property
    def bos_token(self) -> str:
        return self.convert_ids_to_tokens(self.boi_token_id)

    @property
    def eos_token(self) -> str:
        return self.convert_ids_to_tokens(self.eoi_token_id)

    @property
    def pad_token(self) -> str:
        return self.convert_ids_to_tokens(self.pad_token_id)

    # ----- save / load / push -----
    def _save_pretrained(self, directory: Path, model_name: str) -> list[Path]:
        """Write config.json, model.safetensors, codebook.safetensors, vocab.json and README.md (each atomically)."""
        quantizer = self.model.quantizer
        save_tensors(directory / WEIGHTS_NAME, self.model.weights_state_dict(), metadata={"format": "pt"})
        save_tensors(
            directory / CODEBOOK_NAME,
            {CODEBOOK_TENSOR: quantizer.codebook.float()},
            metadata={"normalization": self._normalization, "codebook_size": str(self.vocab_size)},
        )
        self.vocab.save(directory, codebook_dim=quantizer.config.codebook_dim, normalization=self._normalization)
        card = render_tokenizer_card(self, model_name, self.card_info)
        atomic_write_text(directory / CARD_NAME, card)
        hashes = {name: file_sha256(directory / name) for name in (WEIGHTS_NAME, CODEBOOK_NAME, VOCAB_NAME)}
        self.config.save(directory, files_sha256=hashes)  # last: a directory with config.json is a complete save
        return [directory / name for name in SAVED_FILES]

    @property
    def _normalization(self) -> str:
        return "l2" if self.config.quantizer.l2_normalize else "none"

    @classmethod
    def _from_pretrained(
        cls,
        directory: Path,
        device: str | torch.device | None = None,
        micro_batch_size: int | None = None,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        **auto_kwargs: Any,
    ) -> ImageTokenizer:
        """Load a saved folder strictly (every tensor must match). dtype (or transformers' older torch_dtype)
        runs the encoder and decoder in bfloat16 or float16 ("auto": as saved, float32). AutoTokenizer passes its own bookkeeping keywords
        (_from_auto, _commit_hash, ...); others are refused."""
        unknown = sorted(k for k in auto_kwargs if k not in AUTO_TOKENIZER_KWARGS)
        if unknown:
            raise InvalidRequestError(f"from_pretrained got unexpected keyword argument(s) {unknown}")
        if (directory / "prior_layout.json").is_file():
            raise CheckpointError(f"{directory} holds an image prior, not a tokenizer; load it with ImagePrior.from_pretrained")
        config = ImageTokenizerConfig.load(directory)
        for name in (WEIGHTS_NAME, CODEBOOK_NAME):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory}: {name} not found; a saved tokenizer needs {', '.join(SAVED_FILES[:4])}")
        vocab, vocab_data = ImageVocab.load(directory)
        codebook = _load_codebook(directory, config, vocab, vocab_data)
        check_model_size(config, directory / CONFIG_NAME)
        model = VQModel(config)
        weights = load_tensors(directory / WEIGHTS_NAME)
        check_state_dict(directory / WEIGHTS_NAME, weights, model.weights_state_dict())
        check_weight_values(directory / WEIGHTS_NAME, weights)
        verify_files(directory)  # last: what passed every check above may still have been changed since saving
        model.load_weights(weights, codebook)
        tokenizer = cls(config, model, vocab, load_card_info(directory), micro_batch_size)
        return tokenizer.to(device, dtype=dtype or torch_dtype)

    def __repr__(self) -> str:
        h, w = self.grid_size
        params = sum(p.numel() for p in self.model.parameters())
        return (
            f"ImageTokenizer(resolution={self.config.resolution}, grid={h}x{w}, codebook_size={self.vocab_size}, "
            f"codebook_dim={self.config.quantizer.codebook_dim}, vocab_len={len(self)}, params={params:,}, "
            f"bits_per_image={h * w * math.log2(max(self.vocab_size, 2)):.0f}, device={self.device})"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(directory: Path) -> None:
    """Check the files against the sha256 that config.json recorded when they were saved (folders saved before
    this record existed have none). A flipped byte in the weights would otherwise load as a silently different
    model; hashing costs about 40 ms for the 21 MB shapes-64, small next to reading the file."""
    recorded = read_json_object(directory / CONFIG_NAME, "tokenizer").get(FILES_SHA256)
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{directory / CONFIG_NAME}: field {FILES_SHA256!r} must be an object")
    for name, expected in recorded.items():
        if name not in (WEIGHTS_NAME, CODEBOOK_NAME, VOCAB_NAME):
            raise CheckpointError(f"{directory / CONFIG_NAME}: {FILES_SHA256} names an unknown file {name!r}")
        if (directory / name).is_file() and file_sha256(directory / name) != expected:
            raise CheckpointError(
                f"{directory / name}: its sha256 differs from the one {CONFIG_NAME} recorded when it was saved; "
                "the file was changed or corrupted since (re-download or re-save it)"
            )


MAX_PARAMETERS = 1_000_000_000  # 4 GB of fp32 weights: far above any published VQ tokenizer (LlamaGen VQ-16: 72 M)


def check_model_size(config: ImageTokenizerConfig, where: Path) -> None:
    """Count the parameters a config implies without allocating them (meta device); refuse absurd sizes."""
    with torch.device("meta"):
        count = sum(p.numel() for p in VQModel(config).parameters())
    if count > MAX_PARAMETERS:
        raise CheckpointError(
            f"{where}: this config implies {count:,} parameters ({count * 4 / 2**30:.1f} GiB in fp32), over the limit of "
            f"{MAX_PARAMETERS:,}; check ch={config.ch}, ch_mult={list(config.ch_mult)}, z_channels={config.z_channels}, "
            f"codebook_size={config.quantizer.codebook_size}"
        )


def check_weight_values(where: Path, weights: dict[str, torch.Tensor]) -> None:
    """Saved weights are floating point and finite (a tampered or broken file must not load silently)."""
    for key, tensor in weights.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"{where}: tensor {key!r} has dtype {tensor.dtype}; weights must be floating point")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{where}: tensor {key!r} holds NaN or infinite values")
    if weights and not any(bool(tensor.any()) for tensor in weights.values()):
        raise CheckpointError(f"{where}: every weight is zero, so every image would get the same ids")


def _load_codebook(directory: Path, config: ImageTokenizerConfig, vocab: ImageVocab, vocab_data: dict) -> torch.Tensor:
    """Read codebook.safetensors and cross-check it against vocab.json and config.json."""
    k, d = config.quantizer.codebook_size, config.quantizer.codebook_dim
    if vocab.codebook_size != k:
        raise CheckpointError(
            f"{directory / VOCAB_NAME} says codebook_size {vocab.codebook_size} but {CONFIG_NAME} says {k}"
        )
    if tuple(vocab.grid_size) != config.grid_size:
        raise CheckpointError(f"{directory / VOCAB_NAME} grid_size {list(vocab.grid_size)} disagrees with {CONFIG_NAME}")
    if vocab_data.get("codebook_dim", d) != d:
        raise CheckpointError(
            f"{directory / VOCAB_NAME} says codebook_dim {vocab_data.get('codebook_dim')} but {CONFIG_NAME} says {d}"
        )
    expected_norm = "l2" if config.quantizer.l2_normalize else "none"
    if vocab_data.get("codebook_normalization", expected_norm) != expected_norm:
        raise CheckpointError(
            f"{directory / VOCAB_NAME} says codebook_normalization {vocab_data.get('codebook_normalization')!r} "
            f"but {CONFIG_NAME} implies {expected_norm!r}"
        )
    tensors = load_tensors(directory / CODEBOOK_NAME)
    if set(tensors) != {CODEBOOK_TENSOR}:
        raise CheckpointError(
            f"{directory / CODEBOOK_NAME} must hold exactly one tensor named {CODEBOOK_TENSOR!r}, found {sorted(tensors)}"
        )
    codebook = tensors[CODEBOOK_TENSOR]
    if tuple(codebook.shape) != (k, d):
        raise CheckpointError(
            f"{directory / CODEBOOK_NAME} holds a {tuple(codebook.shape)} codebook but {VOCAB_NAME} and "
            f"{CONFIG_NAME} describe {k} codes of dimension {d}"
        )
    if not codebook.is_floating_point():
        raise CheckpointError(f"{directory / CODEBOOK_NAME}: the codebook has dtype {codebook.dtype}; it must be floating point")
    if not torch.isfinite(codebook).all():
        raise CheckpointError(f"{directory / CODEBOOK_NAME} contains NaN or infinite code vectors")
    if k > 1 and bool((codebook == codebook[0]).all()):
        raise CheckpointError(f"{directory / CODEBOOK_NAME}: all {k} code vectors are identical, so every id would be the same")
    return codebook.float()
