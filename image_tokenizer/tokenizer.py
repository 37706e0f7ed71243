"""ImageTokenizer: a VQGAN with the API of a text tokenizer (encode, decode, __call__, vocabulary, save/load/push)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import text_vocab
from .checkpoint import PRIOR_LAYOUT_NAME, SAVED_FILES, read_checkpoint, write_checkpoint
from .config import ImageTokenizerConfig
from .devices import check_device, model_dtype
from .errors import CheckpointError, InvalidIdsError, InvalidImageError, InvalidRequestError
from .fileio import atomic_write_text
from .hub import HubMixin
from .image_processing import postprocess
from .inputs import as_id_grids, as_id_tensor, model_inputs, preprocess_images
from .layouts import IdLayout
from .model_card import CARD_NAME, load_card_info, render_tokenizer_card
from .modeling import VQModel
from .modeling.blocks import channels_last
from .modeling.micro_batches import micro_batch_size, run_in_micro_batches
from .sequences import SequenceOptions, empty_sequences, to_sequences
from .special_tokens import SpecialTokensMixin
from .text_vocab import ImageTextMapping

if TYPE_CHECKING:
    from transformers import BatchEncoding
from .vocab import ImageVocab

AUTO_TOKENIZER_KWARGS = {"_from_auto", "_commit_hash", "trust_remote_code", "code_revision", "use_fast", "subfolder"}
MAX_NATIVE_PIXELS = 2048 * 2048  # native_size encodes keep the image's size, and the model's memory grows with it


class ImageTokenizer(SpecialTokensMixin, HubMixin):
    """Turns images into codebook ids and back: a grid [h, w] of ids, or as the layout says (`layout`: the scales
    of a multiscale tokenizer concatenated [N], a residual one's [h, w, depth], a 1d one's [N]).

    Ids 0..K-1 are codebook indices, row-major; `<boi>`, `<eoi>`, `<pad>` (and any class tokens)
    follow at K, K+1, ... . The encoder always runs on fixed-size micro-batches (zero-padded), so an image
    gets the same ids whatever batch it arrives in: measured on CPU, batch sizes 1, 3 and 7 give encoder
    outputs that differ from batch 8 in the 6th digit, which can flip a near-tie between two codes. The
    micro-batch is fixed per device (see micro_batch_for); ids on another device or dtype may differ on near-ties.
    """

    hub_files = tuple(SAVED_FILES)
    hub_commit_message = "Upload image tokenizer"
    other_kind_files = (PRIOR_LAYOUT_NAME,)

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
        self.model = channels_last(model or VQModel(self.config)).eval()
        self.vocab = vocab or ImageVocab(self.config.quantizer.codebook_size, self.config.grid_size, layout=self.config.layout)
        if self.vocab.codebook_size != self.config.quantizer.codebook_size:
            raise CheckpointError(
                f"vocabulary has {self.vocab.codebook_size} image tokens but the config's codebook has "
                f"{self.config.quantizer.codebook_size}"
            )
        if self.vocab.layout != self.config.layout:
            raise CheckpointError(f"vocabulary layout {self.vocab.layout.kind!r} disagrees with the config's "
                                  f"{self.config.layout.kind!r} ({self.config.layout.describe()})")
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
        """The (finest) token grid at the trained resolution."""
        return self.config.grid_size

    @property
    def layout(self) -> IdLayout:
        """What an image's ids are: `grid` [h, w], `multiscale` [N] (scales coarse to fine), `1d` [N] or `residual`
        [h, w, depth]; `layout.describe()` says it in words, vocab.json carries it."""
        return self.config.layout

    def split_scales(self, ids: Any) -> list[torch.Tensor]:
        """Multiscale ids [N] or [B, N] -> one grid [p, p] (or [B, p, p]) per scale, coarse to fine."""
        return self.layout.split_scales(as_id_tensor(ids))

    def join_scales(self, grids: Sequence[Any]) -> torch.Tensor:
        """One grid [p, p] (or [B, p, p]) per scale, coarse to fine -> multiscale ids [N] (or [B, N])."""
        if not isinstance(grids, (list, tuple)):
            raise InvalidIdsError(f"join_scales takes a list of grids, one per scale, got {type(grids).__name__}")
        return self.layout.join_scales([as_id_tensor(g) for g in grids])

    @property
    def codebook(self) -> torch.Tensor:
        """The K x D code vectors as used for lookup (l2-normalised when the config says so)."""
        return self.model.quantizer.effective_codebook().detach().clone()

    # ----- image tokens inside a text model -----
    def extend_text_tokenizer(self, text_tokenizer: Any, add_eol: bool = False) -> ImageTextMapping:
        """Add <img_xxxxx>, <boi>, <eoi> (and <eol>) to a transformers tokenizer; returns the id mapping."""
        return text_vocab.extend_text_tokenizer(self, text_tokenizer, add_eol=add_eol)

    def to_text_ids(self, ids: Any, mapping: ImageTextMapping, add_boundaries: bool = True) -> torch.Tensor:
        """One image's ids (a [h, w] grid; [N] multiscale, [h, w, depth] residual) -> text-vocab ids (<boi> ...
        <eoi>, <eol> after each row, of every scale, if mapped)."""
        return text_vocab.to_text_ids(ids, mapping, add_boundaries, self.layout)

    def from_text_ids(self, text_ids: Any, mapping: ImageTextMapping, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The image span of a text-id sequence -> one image's ids in the layout ([h, w] for a grid; [B, L] ->
        a batch); non-image ids are a clear error. Another grid than the trained one: the square one, or grid_size=(h, w)."""
        return text_vocab.from_text_ids(text_ids, mapping, self.grid_size, grid_size, self.layout)

    # ----- device -----
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the encoder and decoder run in; the quantizer (projections and distances) stays float32."""
        return next(self.model.encoder.parameters()).dtype

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
        return micro_batch_size(self.device, height, width, self.micro_batch_size)

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

    def _run_model(self, name: str, inputs: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """The model's `name` (encode_ids or decode_ids, compiled when compile() was called) over pixels [B, 3, H, W]
        or ids in the layout, on the micro-batch of the images' size (modeling/micro_batches.py)."""
        height, width = inputs.shape[-2:] if name == "encode_ids" else self._image_size(inputs)
        size = self.micro_batch_for(height, width)
        return run_in_micro_batches(self._compiled.get(name) or getattr(self.model, name), inputs, size, pad)

    def _image_size(self, ids: torch.Tensor) -> tuple[int, int]:
        """The pixel size that a batch of ids in the layout decodes to."""
        if self.layout.fixed_length:  # multiscale, 1d: the trained resolution only
            return self.config.resolution, self.config.resolution
        h, w = ids.shape[1:3]
        return h * self.config.downsample_factor, w * self.config.downsample_factor

    # ----- preprocessing -----
    def preprocess(
        self, images: Any, native_size: bool = False, max_native_pixels: int = MAX_NATIVE_PIXELS
    ) -> tuple[list[torch.Tensor], bool]:
        """Images in any accepted form -> list of normalised [3, H, W] tensors (through PIL, as pipelines and
        evaluation read them), and whether the input was a batch."""
        return preprocess_images(images, self.config, native_size, max_native_pixels)

    # ----- encode / decode -----
    @torch.inference_mode()
    def encode(
        self, images: Any, native_size: bool = False, max_native_pixels: int = MAX_NATIVE_PIXELS
    ) -> torch.Tensor | list[torch.Tensor]:
        """Image(s) -> LongTensor ids [h, w] for one image, [B, h, w] for a list or batch; in the layout's shape
        for other layouts: [N] / [B, N] (multiscale, 1d), [h, w, D] / [B, h, w, D] (residual).

        With native_size=True (grid and residual layouts), images whose sides are multiples of the downsampling factor are encoded
        without resizing; a batch of different sizes then returns a list of [h_i, w_i] tensors. Arrays and
        tensors of pixels go to the device as one batch without PIL (inputs.as_images).
        """
        if native_size and self.layout.kind == "multiscale":
            raise InvalidRequestError(f"native_size does not apply to a multiscale tokenizer: its scales "
                                      f"{list(self.layout.scales)} end at the trained {self.grid_size[0]}x{self.grid_size[1]} grid")
        if native_size and self.layout.kind == "1d":
            raise InvalidRequestError(f"native_size does not apply to a 1d tokenizer: its {self.layout.ids_per_image} "
                                      f"latent tokens describe {self.config.resolution}x{self.config.resolution} images")
        model_input = model_inputs(images, self.config, self.device, native_size, max_native_pixels)
        results: list[torch.Tensor] = [torch.empty(0)] * model_input.count
        for positions, pixels in model_input.groups:
            for position, grid in zip(positions, self._run_model("encode_ids", pixels).cpu()):
                results[position] = grid
        if not model_input.is_batch:
            return results[0]
        if not results:
            return torch.empty((0, *self.layout.shape), dtype=torch.long)  # an empty batch: empty results
        return torch.stack(results) if len(model_input.groups) == 1 else results

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels [B, 3, H, W] (what `preprocess` returns, stacked) -> ids [B, h, w] (or in the
        layout's shape), on the same fixed micro-batches as `encode`, so the ids are the same."""
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InvalidImageError(f"encode_pixels expects a [B, 3, H, W] tensor, got {getattr(pixels, 'shape', type(pixels))}")
        side = self.config.resolution  # a multiscale tokenizer's scales end at its own grid; a 1d one's positions fixed
        if self.layout.fixed_length and tuple(pixels.shape[2:]) != (side, side):
            raise InvalidImageError(f"a {self.layout.kind} tokenizer encodes {side}x{side} images, got {tuple(pixels.shape[2:])}")
        if pixels.shape[0] == 0:
            h, w = pixels.shape[2] // self.config.downsample_factor, pixels.shape[3] // self.config.downsample_factor
            return torch.empty((0, *self.layout.shape_at(h, w)), dtype=torch.long)
        return self._run_model("encode_ids", pixels.float().to(self.device)).cpu()

    def decode(
        self, ids: Any, output_type: str = "pil", skip_special_tokens: bool = True, grid_size: tuple[int, int] | None = None
    ) -> Any:
        """Ids -> image(s). Accepts a grid [h, w], a batch [B, h, w], or one flat sequence [h*w] (specials
        such as <boi>/<eoi>/<pad> are stripped first when skip_special_tokens); other layouts take what `encode`
        gives ([N] / [B, N] multiscale, [h, w, D] / [B, h, w, D] residual) or a flat sequence. One image for a
        single image's ids, a list (pil) or batched array/tensor (np/pt) for a batch."""
        grids, is_batch = as_id_grids(ids, self.vocab, skip_special_tokens, grid_size=grid_size)
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
        grids = [as_id_grids(seq, self.vocab, skip_special_tokens, True, grid_size)[0] for seq in sequences]
        if len({g.shape for g in grids}) > 1:
            return [self._decode_grids(g, output_type)[0] for g in grids]  # native-size images of several sizes
        empty = torch.empty((0, *self.layout.shape), dtype=torch.long)
        return self._decode_grids(torch.cat(grids) if grids else empty, output_type)

    @torch.inference_mode()
    def _decode_grids(self, grids: torch.Tensor, output_type: str) -> Any:
        if output_type not in ("pil", "np", "pt"):
            raise InvalidImageError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if grids.shape[0] == 0:
            h, w = self._image_size(grids)
            return postprocess(torch.empty((0, 3, h, w)), self.config.preprocessing, output_type)
        # Decoding needs no padding (pixel values may differ in the last float bit across batch sizes, ids
        # cannot), except compiled, where a fixed shape means one compilation.
        pixels = self._run_model("decode_ids", grids.to(self.device), pad=self.compiled)
        return postprocess(pixels, self.config.preprocessing, output_type)

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
        """Images -> BatchEncoding with `input_ids` ([<boi>] + h*w ids + [<eoi>]; other layouts: their ids
        flattened in the layout's order) and `attention_mask`, per image. The keywords are a transformers
        tokenizer's (image_tokenizer.sequences)."""
        from transformers import BatchEncoding  # here, not at import: transformers costs every CLI call ~0.5 s

        options = SequenceOptions(add_special_tokens, padding, truncation, max_length, return_attention_mask, return_tensors)
        encoded = self.encode(images, native_size=native_size)
        single = isinstance(encoded, torch.Tensor) and encoded.ndim == self.layout.ndim
        grids = [encoded] if single else list(encoded)
        if not grids:
            return BatchEncoding(empty_sequences(options, self.layout.ids_per_image), tensor_type=return_tensors)
        data = to_sequences(grids, options, self.boi_token_id, self.eoi_token_id, self.pad_token_id, self.model_max_length)
        return BatchEncoding(data, tensor_type=return_tensors)

    @property
    def model_max_length(self) -> int:
        """Longest sequence at the trained resolution: <boi> + an image's ids (h*w for a grid) + <eoi>."""
        return self.layout.ids_per_image + 2

    # ----- save / load / push -----
    def _save_pretrained(self, directory: Path, model_name: str) -> list[Path]:
        """Write the model card, then the checked files (checkpoint.py; config.json last), each atomically."""
        atomic_write_text(directory / CARD_NAME, render_tokenizer_card(self, model_name, self.card_info))
        write_checkpoint(directory, self.config, self.model, self.vocab)
        return [directory / name for name in SAVED_FILES]

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
        """Load a saved folder strictly (checkpoint.read_checkpoint: every tensor must match). dtype (or
        transformers' older torch_dtype) runs the encoder and decoder in bfloat16 or float16 ("auto": as saved,
        float32). AutoTokenizer passes its own bookkeeping keywords (_from_auto, _commit_hash, ...); others are
        refused."""
        unknown = sorted(k for k in auto_kwargs if k not in AUTO_TOKENIZER_KWARGS)
        if unknown:
            raise InvalidRequestError(f"from_pretrained got unexpected keyword argument(s) {unknown}")
        config, vocab, model = read_checkpoint(directory)
        tokenizer = cls(config, model, vocab, load_card_info(directory), micro_batch_size)
        return tokenizer.to(device, dtype=dtype or torch_dtype)

    def __repr__(self) -> str:
        h, w = self.grid_size
        params = sum(p.numel() for p in self.model.parameters())
        layout = self.layout
        shape = {"grid": "", "multiscale": f", scales={list(layout.scales)}", "residual": f", depth={layout.depth}",
                 "1d": ", 1d"}[layout.kind]
        return (
            f"ImageTokenizer(resolution={self.config.resolution}, grid={h}x{w}{shape}, codebook_size={self.vocab_size}, "
            f"codebook_dim={self.config.quantizer.codebook_dim}, vocab_len={len(self)}, params={params:,}, "
            f"bits_per_image={layout.ids_per_image * math.log2(max(self.vocab_size, 2)):.0f}, device={self.device})"
        )
