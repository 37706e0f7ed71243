"""What the kinds that take several lookups per image in one shared, learned codebook have in common: multiscale
(VAR, multiscale.py: one lookup per scale) and residual (RQ-VAE, residual.py: `depth` lookups per position).

Each step takes the nearest code of what the earlier steps left (the residual), in fp32 and in chunks
(`VectorQuantizer.nearest_codes`); f_hat, the sum of the steps' contributions, is what the decoder receives. The
contributions are the raw code vectors: with distance "cosine" only the lookup compares normalised vectors (VAR).
Training reuses VectorQuantizer's parts over every step's lookups: EMA and the usage counts of dead-code restart
count every step's lookups (for restart, each step scaled to the largest, `_usage_counts`), and a dead code
restarts on a residual row of any step alike (`balanced_rows`); a step that chose too few distinct codes in a batch
takes the least-used codes for its own rows (`_feed_starved_steps`), since one code taking a coarse scale's every
lookup is never dead;
`kmeans_init` fits the shared codebook to every step's residuals, each step weighing the same. The loss is the mean over steps k of beta * ||f - sg[f_hat_k]||^2 + ||sg[f] - f_hat_k||^2, f_hat_k
the partial sum after step k (VAR's; RQ-VAE's commitment term alike); use_ema drops the second term. Usage and
perplexity are reported per step too (`usage_per_step`), where a collapsed scale or depth shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import QuantizerConfig
from .quantizer import VectorQuantizer, broadcast_from_rank0, rotate_to, sum_over_processes
from .quantizer_base import QuantizerOutput, usage_and_perplexity

STARVED_SHARE = 0.25  # a step choosing fewer distinct codes in a batch than this share of min(K, lookups) is fed


@dataclass
class Steps:
    """One pass of a stacked quantizer: after each step, the partial sum f_hat_k [B, C, H, W], the rows it looked
    up [n_k, D] (normalised under cosine) and their ids [n_k]."""

    partial_sums: list[torch.Tensor] = field(default_factory=list)
    rows: list[torch.Tensor] = field(default_factory=list)
    ids: list[torch.Tensor] = field(default_factory=list)

    def add(self, partial_sum: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor) -> None:
        self.partial_sums.append(partial_sum)
        self.rows.append(rows)
        self.ids.append(ids)


class StackedQuantizer(VectorQuantizer):
    """A VectorQuantizer whose features are quantized in several steps; a kind defines the steps (`_quantize`),
    how ids come back to features (`features_from_ids`) and how ids split into steps (`step_ids`)."""

    def __init__(self, dim: int, config: QuantizerConfig):
        if dim != config.codebook_dim:
            raise ValueError(f"a {config.kind} quantizer works on the features themselves: dim {dim} must equal "
                             f"codebook_dim {config.codebook_dim}")
        super().__init__(dim, config)

    # ----- what a kind defines -----
    @property
    def step_labels(self) -> list[str]:
        """A name for each step, in order ("scale 4x4", "depth 0"), for logs and tables."""
        raise NotImplementedError

    def step_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Ids in the kind's layout -> each step's ids ([B, p, p] per scale, [B, h, w] per depth)."""
        raise NotImplementedError

    def features_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids in the kind's layout -> f_hat [B, C, H, W] in fp32, the same sum as encoding computed."""
        raise NotImplementedError

    def _quantize(self, f: torch.Tensor) -> Steps:
        """fp32 features [B, C, H, W] -> every step's partial sum, lookup rows and ids."""
        raise NotImplementedError

    def _layout_ids(self, step_ids: list[torch.Tensor], f: torch.Tensor) -> torch.Tensor:
        """Each step's flat ids -> ids in the kind's layout."""
        raise NotImplementedError

    # ----- shared -----
    def _largest_dot(self) -> bool:
        # VAR's cosine lookup: the largest dot product of l2-normalised vectors, taken as such.
        return self.config.distance in ("cosine", "dot")

    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """The raw code vectors [..., D] (what the steps add up, whatever the distance)."""
        return F.embedding(ids, self.codebook.float())

    def _nearest(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows [n, D] of residual -> (the rows as looked up: l2-normalised under cosine, their nearest ids)."""
        lookup = F.normalize(rows, dim=-1) if self.config.distance == "cosine" else rows
        return lookup, self.nearest_codes(lookup.detach(), self.effective_codebook().detach())

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects [B, {self.dim}, H, W], got {tuple(z.shape)}")
        return z.float()

    @torch.no_grad()
    def encode_ids(self, z: torch.Tensor) -> torch.Tensor:
        """Ids only, in the kind's layout, for inference: the same lookups as forward."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            f = self._features(z)
            return self._layout_ids(self._quantize(f).ids, f)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids in the kind's layout -> the decoder's input [B, dim, H, W], channels_last."""
        with torch.autocast(device_type=ids.device.type, enabled=False):
            return self.features_from_ids(ids).contiguous(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with torch.autocast(device_type=z.device.type, enabled=False):
            f = self._features(z)
            steps = self._quantize(f)
            f_hat = steps.partial_sums[-1]
            commitment_loss = torch.stack([F.mse_loss(f, s.detach()) for s in steps.partial_sums]).mean()
            codebook_loss = torch.stack([F.mse_loss(s, f.detach()) for s in steps.partial_sums]).mean()
            loss = self.config.beta * commitment_loss + (0.0 if self.config.use_ema else codebook_loss)
            if self.config.gradient == "rotation":
                b, c, h, w = f.shape
                rows = rotate_to(f.permute(0, 2, 3, 1).reshape(-1, c), f_hat.detach().permute(0, 2, 3, 1).reshape(-1, c))
                passed = rows.reshape(b, h, w, c).permute(0, 3, 1, 2)
            else:
                passed = f + (f_hat - f).detach()  # straight-through estimator
            ids = torch.cat(steps.ids)
            counts = self.batch_counts(ids)
            if self.training:
                self._training_updates(torch.cat(steps.rows).detach(), ids, counts, balanced_rows(steps.rows),
                                       self._usage_counts(steps.ids))
                if self.config.dead_code_threshold > 0:
                    self._feed_starved_steps(steps)
            usage, perplexity = usage_and_perplexity(counts)
            step_usage, step_perplexity = self._step_statistics(steps.ids)
            return QuantizerOutput(
                quantized=passed.to(z.dtype), ids=self._layout_ids(steps.ids, f), loss=loss, codebook_loss=codebook_loss,
                commitment_loss=commitment_loss, usage=usage, perplexity=perplexity, step_usage=step_usage,
                step_perplexity=step_perplexity,
            )

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, iters: int, seed: int = 0) -> torch.Tensor:
        """Set the shared codebook to k-means centroids of every step's residual rows of feature maps z [B, C, H, W];
        returns the centroids. Each step weighs the same (a row counts 1 / its step's rows): one codebook serves all
        steps, and by row count VAR's 1x1 scale would be 1 row in 680, left without codes of its own (the collapse
        of the coarse scales). Step k's rows depend on the codes chosen before it, so the fit is repeated once per
        step, each round quantizing with the last round's codebook; round 0 starts from a zero codebook, under
        which every step sees the features themselves (each scale's area-downsampled map)."""
        f = self._features(z)
        self.set_codebook(torch.zeros_like(self.codebook))
        centroids = self.codebook
        for round_ in range(len(self.step_labels)):
            rows = self._quantize(f).rows
            weights = torch.cat([torch.full((len(r),), 1.0 / len(r), device=f.device) for r in rows])
            centroids = self._kmeans(torch.cat(rows), iters, seed + round_, weights)
            self.set_codebook(centroids)
        return centroids

    def _usage_counts(self, step_ids: list[torch.Tensor]) -> torch.Tensor:
        """What dead-code restart counts: each step's hits scaled to the largest step's lookups (a hit at VAR's 1x1
        scale of a 16x16 grid counts 256). A raw count would let a step of P lookups per batch keep at most P codes
        above the threshold of one hit per batch, and so would hold the coarse scales to a few codes."""
        most = max(ids.numel() for ids in step_ids)
        return sum(self.batch_counts(ids) * (most / ids.numel()) for ids in step_ids)

    @torch.no_grad()
    def _feed_starved_steps(self, steps: Steps) -> None:
        """Per-step restart: a step whose lookups in this batch (summed over processes) chose fewer distinct codes
        than STARVED_SHARE of those they could reach, min(K, lookups), takes the least-used codes for its own rows.
        Dead-code restart alone cannot do it: one code taking every image's 1x1 lookup is never dead. The first
        `coarse_restart_steps` steps restart coarse_restart_share of theirs at every batch: the images' mean features
        drift together faster than they differ, so only codes placed on the newest rows stay near them."""
        k, grace = self.codebook_size, self.restart_grace
        coarse = self.config.coarse_restart_steps or 0
        fed = torch.zeros(k, dtype=torch.bool, device=self.usage_count.device)  # not taken twice in one batch
        for step, (rows, ids) in enumerate(zip(steps.rows, steps.ids)):
            n = rows.shape[0]
            if step < coarse:  # a coarse step restarts its share every batch, starved or not
                want = math.ceil(self.config.coarse_restart_share * min(k, n))
                take = torch.ones(want, dtype=torch.bool, device=rows.device)
            else:
                want = math.ceil(STARVED_SHARE * min(k, n))
                used = (sum_over_processes(self.batch_counts(ids)) > 0).sum()
                take = torch.arange(want, device=rows.device) < (want - used)  # as many codes as are missing
            codes = torch.argsort(self.usage_count.masked_fill(fed, float("inf")))[:want]  # the least used
            picked = rows[torch.randperm(n, device=rows.device)[:want] if n >= want else torch.randint(0, n, (want,), device=rows.device)]
            replacement = broadcast_from_rank0(picked.float().contiguous())
            self.codebook.data[codes] = torch.where(take[:, None], replacement.to(self.codebook.dtype), self.codebook.data[codes])
            if self.config.use_ema:
                self.ema_embed_sum[codes] = torch.where(take[:, None], replacement, self.ema_embed_sum[codes])
                self.ema_cluster_size[codes] = torch.where(take, 1.0, self.ema_cluster_size[codes])
            self.usage_count[codes] = torch.where(take, grace, self.usage_count[codes])
            fed[codes] |= take

    def counts_per_step(self, ids: torch.Tensor) -> torch.Tensor:
        """How often each code occurs at each step of ids in the kind's layout: [S, K] (sum them over an evaluation
        set to see which scale or depth uses how much of the codebook)."""
        return torch.stack([self.batch_counts(step.reshape(-1)) for step in self.step_ids(ids)])

    def usage_per_step(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(usage [S], perplexity [S]) of ids in the kind's layout: each step's share of codes used and exp(entropy)."""
        return self._step_statistics([step.reshape(-1) for step in self.step_ids(ids)])

    def _step_statistics(self, step_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [usage_and_perplexity(self.batch_counts(ids)) for ids in step_ids]
        return torch.stack([u for u, _ in pairs]), torch.stack([p for _, p in pairs])


def balanced_rows(step_rows: list[torch.Tensor]) -> torch.Tensor:
    """The rows a dead code restarts from: as many from each step (drawn with replacement) as the largest step has,
    so a restart lands on a coarse scale's residuals as often as on the finest scale's."""
    n = max(len(rows) for rows in step_rows)
    return torch.cat([rows[torch.randint(0, len(rows), (n,), device=rows.device)] for rows in step_rows]).detach()
