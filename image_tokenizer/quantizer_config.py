"""The quantizer's configuration: which kind (vq, fsq, lfq, multiscale, residual), its geometry, loss weight and
anti-collapse options."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError, shorten
from .layouts import MAX_DEPTH, MAX_SCALES, scales_problem

CODEBOOK_INITS = ("normal", "uniform")
GRADIENT_ESTIMATORS = ("ste", "rotation")
QUANTIZER_KINDS = ("vq", "fsq", "lfq", "multiscale", "residual")
LEARNED_KINDS = ("vq", "multiscale", "residual")  # kinds with a learned codebook (codebook.safetensors holds it)
DISTANCES = ("cosine", "l2", "dot")
STACKED_DISTANCES = {"multiscale": ("l2", "cosine"), "residual": ("l2",)}  # VAR's two lookups; RQ-VAE's one
FIELD_KINDS = {"scales": "multiscale", "phi_ratio": "multiscale", "phi_convs": "multiscale", "depth": "residual"}
STACKED_KINDS = ("multiscale", "residual")  # several lookups per image in one learned codebook
COARSE_RESTART_SHARE = 1.0  # coarse_restart_share when coarse_restart_steps is set and the share is not
VAR_PHI_RATIO, VAR_PHI_CONVS = 0.5, 4  # VAR's quant_resi and share_quant_resi
BIT_ORDERS = ("lsb_first", "msb_first")
MAX_IMPLICIT_BITS = 20  # fsq and lfq codebooks hold at most 2^20 codes
MAX_CODEBOOK_DIM = 2**16  # published codebooks use 4 to 256 dimensions; the bound keeps sizes countable


@dataclass
class QuantizerConfig:
    """Quantizer settings. `kind` "vq" learns a codebook (nearest code by `distance`); "fsq" and "lfq" imply theirs
    (FSQ `levels`, LFQ `bits`), so codebook_size and codebook_dim follow from the definition and nothing is stored.
    "multiscale" (VAR) and "residual" (RQ-VAE) take several lookups per image in one learned codebook: one per
    scale of `scales`, or `depth` per position."""

    codebook_size: int | None = None  # vq: 1024 when not given; fsq: prod(levels); lfq: 2 ** bits
    codebook_dim: int | None = None  # the lookup dimension (vq: 8 when not given; fsq: len(levels); lfq: bits)
    beta: float = 0.25  # weight of the commitment term ||z - sg[e]||^2
    l2_normalize: bool | None = None  # the old name of distance "cosine" (true) / "l2" (false); kept for old files
    use_ema: bool = False  # update codes by exponential moving averages instead of the codebook loss
    ema_decay: float = 0.99  # use_ema: decay of the moving averages of code sums and counts
    ema_epsilon: float = 1e-5  # use_ema: Laplace smoothing of the counts (no division by zero)
    dead_code_threshold: float = 1.0  # restart codes whose running usage count falls below this; 0 = off
    usage_decay: float = 0.99  # decay of the running usage count used for dead-code restarts
    codebook_init: str = "normal"  # "normal" (N(0,1)) or "uniform" (the textbook U(-1/K, 1/K))
    gradient: str = "ste"  # "ste" (straight-through) or "rotation" (the rotation trick, Fifty et al. 2024)
    distance_chunk_elements: int = 2**25  # distance-matrix entries computed at once (memory bound)
    kind: str = "vq"  # "vq" (a learned codebook), "fsq" (finite scalar) or "lfq" (lookup-free, one bit per channel)
    distance: str | None = None  # vq: "cosine" (default), "l2", or "dot" (argmax z . e, IBQ)
    levels: tuple[int, ...] | None = None  # fsq: levels per channel; channel 0 is the least-significant digit of an id
    bits: int | None = None  # lfq: channels, each quantized to -1 or +1
    bit_order: str = "lsb_first"  # lfq: channel 0 is the lowest bit of an id (Open-MAGVIT2) or the highest (msb_first)
    entropy_loss_weight: float = 0.1  # lfq: weight of the entropy loss (MAGVIT-v2, Open-MAGVIT2)
    entropy_temperature: float = 0.01  # lfq: softmax temperature of the entropy loss over codes
    sample_entropy_weight: float = 1.0  # lfq: per-sample entropy, minimised (confident assignments)
    batch_entropy_weight: float = 1.0  # lfq: entropy of the batch's average code distribution, maximised (usage)
    entropy_group_bits: int = 9  # lfq: the batch entropy is summed over groups of this many bits (exact if bits <= it)
    scales: tuple[int, ...] | None = None  # multiscale: scale sides coarse to fine (VAR: 1,2,3,4,5,6,8,10,13,16); the last is the grid side
    depth: int | None = None  # residual: codes per position (RQ-VAE: 4), each quantizing what the earlier ones left
    phi_ratio: float | None = None  # multiscale: rho in phi(h) = (1 - rho) h + rho conv3x3(h) (VAR's quant_resi; default 0.5, 0 = no convs)
    phi_convs: int | None = None  # multiscale: phi convolutions the scales share (VAR's share_quant_resi; default 4)
    coarse_restart_steps: int | None = None  # multiscale/residual: the coarsest steps (scales, depths) that restart codes on their own rows at every training batch, starved or not (VAR's 1x1 and 2x2 collapse without it: 2); None = none
    coarse_restart_share: float | None = None  # with coarse_restart_steps: the share of min(K, a step's lookups in a batch) restarted (default 1: every row)

    def __post_init__(self) -> None:
        if self.levels is not None:
            self.levels = tuple(self.levels)
        if isinstance(self.scales, list):
            self.scales = tuple(self.scales)
        self._derive()
        self.validate()

    def _derive(self) -> None:
        """Fill in what the kind implies: the learned kinds' defaults and distance (multiscale: VAR's phi), or fsq/lfq's
        codebook size and dimension."""
        if self.kind in LEARNED_KINDS:
            if self.coarse_restart_steps is not None and self.coarse_restart_share is None:
                self.coarse_restart_share = COARSE_RESTART_SHARE
            if self.kind == "multiscale":
                self.phi_ratio = VAR_PHI_RATIO if self.phi_ratio is None else self.phi_ratio
                self.phi_convs = (VAR_PHI_CONVS if self.phi_ratio else 0) if self.phi_convs is None else self.phi_convs
            if self.distance is None:
                default_l2 = self.l2_normalize is False or (self.kind != "vq" and self.l2_normalize is None)
                self.distance = "l2" if default_l2 else "cosine"
            elif self.l2_normalize is not None and self.l2_normalize != (self.distance == "cosine"):
                raise ConfigError(
                    f"quantizer.l2_normalize={self.l2_normalize} contradicts quantizer.distance={shorten(self.distance)}; "
                    "give only distance (l2_normalize is its old name: true = 'cosine', false = 'l2')"
                )
            self.l2_normalize = self.distance == "cosine"
            self.codebook_size = 1024 if self.codebook_size is None else self.codebook_size
            self.codebook_dim = 8 if self.codebook_dim is None else self.codebook_dim
            return
        shape = self._implied_shape()
        if shape is None:
            return  # validate() names the problem
        for name, value in zip(("codebook_size", "codebook_dim"), shape):
            if getattr(self, name) is None:
                setattr(self, name, value)

    def _implied_shape(self) -> tuple[int, int] | None:
        """(codebook_size, codebook_dim) that fsq levels or lfq bits define, None while they are missing or bad."""
        if self.kind == "fsq" and self.levels and all(isinstance(v, int) and v >= 2 for v in self.levels):
            return math.prod(self.levels), len(self.levels)
        if self.kind == "lfq" and isinstance(self.bits, int) and 1 <= self.bits <= MAX_IMPLICIT_BITS:
            return 2**self.bits, self.bits
        return None

    @property
    def normalization(self) -> str:
        """How code vectors are normalised before lookup: "l2" for cosine distance, else "none"."""
        return "l2" if self.learned_codebook and self.distance == "cosine" else "none"

    @property
    def learned_codebook(self) -> bool:
        """Whether the codebook is learned and stored (vq, multiscale, residual), not implied (fsq, lfq)."""
        return self.kind in LEARNED_KINDS

    def validate(self) -> None:
        if self.kind not in QUANTIZER_KINDS:
            raise ConfigError(f"quantizer.kind must be one of {QUANTIZER_KINDS}, got {shorten(self.kind)}")
        if self.kind in LEARNED_KINDS:
            self._validate_vq()
        elif self.kind == "fsq":
            self._validate_fsq()
        else:
            self._validate_lfq()
        self._validate_coarse_restart()
        for name in ("codebook_size", "codebook_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"quantizer.{name} must be an integer, got {shorten(value)}")
            if value < 1:
                raise ConfigError(f"quantizer.{name} must be at least 1, got {value}")
        if self.codebook_size > 2**31 - 1:
            raise ConfigError(f"quantizer.codebook_size {self.codebook_size} does not fit in int32")
        if self.codebook_dim > MAX_CODEBOOK_DIM:
            raise ConfigError(f"quantizer.codebook_dim {self.codebook_dim} is over the limit of {MAX_CODEBOOK_DIM:,}")
        if self.beta < 0:
            raise ConfigError(f"quantizer.beta must be >= 0, got {self.beta}")
        for name in ("ema_decay", "usage_decay"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"quantizer.{name} must be in (0, 1), got {value}")
        if self.dead_code_threshold < 0:
            raise ConfigError(f"quantizer.dead_code_threshold must be >= 0, got {self.dead_code_threshold}")
        if self.codebook_init not in CODEBOOK_INITS:
            raise ConfigError(f"quantizer.codebook_init must be one of {CODEBOOK_INITS}, got {shorten(self.codebook_init)}")
        if self.gradient not in GRADIENT_ESTIMATORS:
            raise ConfigError(f"quantizer.gradient must be one of {GRADIENT_ESTIMATORS}, got {shorten(self.gradient)}")
        if self.distance_chunk_elements < 1:
            raise ConfigError("quantizer.distance_chunk_elements must be positive")

    def _validate_vq(self) -> None:
        """vq and the kinds that stack lookups in one learned codebook (multiscale, residual)."""
        distances = STACKED_DISTANCES.get(self.kind, DISTANCES)
        if self.distance not in distances:
            raise ConfigError(f"quantizer.distance must be one of {distances} for kind {self.kind!r}, got {shorten(self.distance)}")
        for name in ("levels", "bits"):
            if getattr(self, name) is not None:
                raise ConfigError(f"quantizer.{name} applies to kind 'fsq' or 'lfq', not {self.kind!r}; set quantizer.kind")
        self._validate_stacked()

    def _validate_stacked(self) -> None:
        """multiscale: scales and phi; residual: depth; every other kind: none of them."""
        for name, owner in FIELD_KINDS.items():
            if getattr(self, name) is not None and self.kind != owner:
                raise ConfigError(f"quantizer.{name} applies to kind {owner!r}, not {self.kind!r}; remove it or set quantizer.kind")
        if self.kind == "residual" and not (_is_int(self.depth) and 1 <= self.depth <= MAX_DEPTH):
            raise ConfigError(f"quantizer.depth must be an integer from 1 to {MAX_DEPTH} for kind 'residual', got {shorten(self.depth)}")
        if self.kind != "multiscale":
            return
        problem = scales_problem(self.scales)
        if problem:
            raise ConfigError(f"quantizer.{problem} for kind 'multiscale'")
        if not isinstance(self.phi_ratio, (int, float)) or isinstance(self.phi_ratio, bool) or not 0 <= self.phi_ratio <= 1:
            raise ConfigError(f"quantizer.phi_ratio must be a number in [0, 1], got {shorten(self.phi_ratio)}")
        if not _is_int(self.phi_convs) or not 0 <= self.phi_convs <= MAX_SCALES or (self.phi_convs == 0) != (self.phi_ratio == 0):
            raise ConfigError(f"quantizer.phi_convs must be an integer from 1 to {MAX_SCALES} (0 exactly when phi_ratio is 0: "
                              f"phi is then the identity), got {shorten(self.phi_convs)} with phi_ratio {self.phi_ratio}")

    def _validate_coarse_restart(self) -> None:
        """coarse_restart_steps/share: stacked kinds only, at most the kind's steps, a share in (0, 1]."""
        steps, share = self.coarse_restart_steps, self.coarse_restart_share
        if steps is None and share is None:
            return
        if self.kind not in STACKED_KINDS:
            raise ConfigError(f"quantizer.coarse_restart_steps and coarse_restart_share apply to kinds {STACKED_KINDS}, "
                              f"not {shorten(self.kind)}; remove them or set quantizer.kind")
        if steps is None:
            raise ConfigError("quantizer.coarse_restart_share is set without coarse_restart_steps; give both or neither")
        total = self.depth if self.kind == "residual" else len(self.scales)
        if not (_is_int(steps) and 1 <= steps <= total):
            raise ConfigError(f"quantizer.coarse_restart_steps must be an integer from 1 to the {self.kind} quantizer's "
                              f"{total} steps, got {shorten(steps)}")
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
            raise ConfigError(f"quantizer.coarse_restart_share must be a number in (0, 1], got {shorten(share)}")

    def _validate_implicit(self, definition: str) -> None:
        """What fsq and lfq share: no vq-only options, and codebook_size/dim (when given) equal to the implied ones."""
        self._validate_stacked()
        if self.distance is not None or self.l2_normalize:
            raise ConfigError(f"quantizer.distance and l2_normalize apply to kind 'vq' only, not {shorten(self.kind)}")
        if self.use_ema:
            raise ConfigError(f"quantizer.use_ema applies to kind 'vq' only: a {self.kind} codebook is not learned")
        size, dim = self._implied_shape()
        if (self.codebook_size, self.codebook_dim) != (size, dim):
            raise ConfigError(
                f"quantizer.codebook_size {self.codebook_size} and codebook_dim {self.codebook_dim} disagree with "
                f"{definition}, which implies {size} codes of dimension {dim}; leave them out"
            )

    def _validate_fsq(self) -> None:
        if not self.levels or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.levels):
            raise ConfigError(f"quantizer.levels must be a non-empty list of integers for kind 'fsq', got {shorten(self.levels)}")
        if min(self.levels) < 2:
            raise ConfigError(f"quantizer.levels must all be at least 2, got {shorten(list(self.levels))}")
        if len(self.levels) > MAX_IMPLICIT_BITS or math.prod(self.levels) > 2**MAX_IMPLICIT_BITS:
            raise ConfigError(f"quantizer.levels {shorten(list(self.levels))} imply more codes than the limit of "
                              f"2^{MAX_IMPLICIT_BITS} = {2**MAX_IMPLICIT_BITS:,}")
        if self.bits is not None:
            raise ConfigError("quantizer.bits applies to kind 'lfq', not 'fsq'; remove it")
        self._validate_implicit(f"levels {shorten(list(self.levels))}")

    def _validate_lfq(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 1 <= self.bits <= MAX_IMPLICIT_BITS:
            raise ConfigError(f"quantizer.bits must be an integer from 1 to {MAX_IMPLICIT_BITS} for kind 'lfq', "
                              f"got {shorten(self.bits)}")
        if self.bit_order not in BIT_ORDERS:
            raise ConfigError(f"quantizer.bit_order must be one of {BIT_ORDERS}, got {shorten(self.bit_order)}")
        if self.levels is not None:
            raise ConfigError("quantizer.levels applies to kind 'fsq', not 'lfq'; remove it")
        for name in ("entropy_loss_weight", "sample_entropy_weight", "batch_entropy_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"quantizer.{name} must be >= 0, got {getattr(self, name)}")
        if self.entropy_temperature <= 0:
            raise ConfigError(f"quantizer.entropy_temperature must be positive, got {self.entropy_temperature}")
        if not 1 <= self.entropy_group_bits <= 16:
            raise ConfigError(f"quantizer.entropy_group_bits must be in 1..16, got {self.entropy_group_bits}")
        self._validate_implicit(f"bits={self.bits}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
