"""Vector quantizer (kind "vq"): nearest code of a learned codebook, straight-through gradients, anti-collapse options.

Distances: "l2" (argmin ||z - e||^2), "cosine" (the same on l2-normalised vectors) or "dot" (argmax z . e, IBQ).
Loss = ||sg[z] - e||^2 + beta * ||z - sg[e]||^2, with beta on the *commitment* term (taming's legacy mode
puts it on the codebook term). Distances are computed in fp32 even under autocast, in chunks, so a large
codebook over a large grid fits in memory and bf16 rounding never changes which code wins.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..config import QuantizerConfig
from .quantizer_base import QuantizerBase, QuantizerOutput, usage_and_perplexity

__all__ = ["TRAINING_BUFFERS", "QuantizerOutput", "VectorQuantizer", "broadcast_from_rank0", "rotate_to", "sum_over_processes",
           "usage_and_perplexity"]

TRAINING_BUFFERS = ("usage_count", "ema_cluster_size", "ema_embed_sum")


class VectorQuantizer(QuantizerBase):
    """Maps each `dim`-channel vector of a feature map to its nearest of `codebook_size` codes."""

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__(dim, config)
        k, d = config.codebook_size, config.codebook_dim
        if config.codebook_init == "uniform":
            init = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)
        else:
            init = torch.randn(k, d)
        if config.use_ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_cluster_size", torch.ones(k))
            self.register_buffer("ema_embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # Zero: a codebook nobody has set is all dead at the first training step, and restarts on that batch's rows.
        self.register_buffer("usage_count", torch.zeros(k))

    def effective_codebook(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The K x D vectors that distances are measured to (l2-normalised when configured), in fp32, computed on
        `device` (default: the codebook's own). Normalising on a GPU can round differently from a CPU."""
        codes = self.codebook.float() if device is None else self.codebook.detach().to(device).float()
        return F.normalize(codes, dim=-1) if self.config.distance == "cosine" else codes

    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.effective_codebook())

    def initial_state(self, codebook: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The codebook read from codebook.safetensors, and fresh training statistics."""
        if codebook is None:
            raise ValueError("a vq quantizer needs its codebook")
        # Zero usage, as a fresh codebook: a loaded model's state (and its fingerprint) equals the one it was saved
        # from. Training from it (init_from) calls protect_codes so that restart keeps the loaded codes.
        state = {"codebook": codebook, "usage_count": torch.zeros_like(self.usage_count)}
        if self.config.use_ema:
            state["ema_cluster_size"] = torch.ones_like(self.ema_cluster_size)
            state["ema_embed_sum"] = codebook.clone()
        return state

    def _to_lookup_space(self, z_flat: torch.Tensor) -> torch.Tensor:
        z = super()._to_lookup_space(z_flat)
        return F.normalize(z, dim=-1) if self.config.distance == "cosine" else z

    def _largest_dot(self) -> bool:
        """Whether the nearest code is the one of largest dot product (distance "dot") instead of smallest L2."""
        return self.config.distance == "dot"

    @torch.no_grad()
    def nearest_codes(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """argmin_k ||z - e_k||^2 (argmax_k z . e_k for distance "dot") for each row of z, in fp32 chunks of at most
        distance_chunk_elements entries."""
        z, codes = z.float(), codes.float()
        dot = self._largest_dot()
        code_sq = None if dot else codes.pow(2).sum(dim=1)
        rows = max(1, self.config.distance_chunk_elements // codes.shape[0])
        ids = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], rows):
            chunk = z[start : start + rows]
            if dot:
                ids[start : start + rows] = torch.mm(chunk, codes.t()).argmax(dim=1)
                continue
            # ||z||^2 is the same for every code of a row, so it cannot change the argmin.
            distances = torch.addmm(code_sq.unsqueeze(0), chunk, codes.t(), beta=1.0, alpha=-2.0)
            ids[start : start + rows] = distances.argmin(dim=1)
        return ids

    def _assign(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, C, H, W] features -> (vectors in lookup space [BHW, D], codes [K, D], nearest ids [BHW]), fp32."""
        z_lookup = self._rows(z)
        codes = self.effective_codebook()
        return z_lookup, codes, self.nearest_codes(z_lookup.detach(), codes.detach())

    @torch.no_grad()
    def encode_ids(self, z: torch.Tensor) -> torch.Tensor:
        """Ids only [B, H, W], for inference: the same assignment as forward without losses or statistics."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self._assign(z)[2].reshape(z.shape[0], z.shape[2], z.shape[3])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_lookup, codes, ids = self._assign(z)
            chosen = F.embedding(ids, codes)
            codebook_loss = F.mse_loss(chosen, z_lookup.detach())
            commitment_loss = F.mse_loss(z_lookup, chosen.detach())
            loss = self.config.beta * commitment_loss
            if not self.config.use_ema:
                loss = loss + codebook_loss
            if self.config.gradient == "rotation":
                passed = rotate_to(z_lookup, chosen.detach())
            else:
                passed = z_lookup + (chosen - z_lookup).detach()  # straight-through estimator
            counts = self.batch_counts(ids)
            if self.training:
                self._training_updates(z_lookup.detach(), ids, counts)
            return self._output(z, passed, ids, counts, (loss, codebook_loss, commitment_loss))

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, iters: int, seed: int = 0) -> torch.Tensor:
        """Set the codebook to k-means centroids of feature maps z [B, dim, H, W] (clustered in the lookup
        space, l2-normalised when configured); returns the centroids. Training calls it before step 0."""
        data = self._to_lookup_space(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
        centroids = self._kmeans(data, iters, seed)
        self.set_codebook(centroids)
        return centroids

    @torch.no_grad()
    def _kmeans(self, data: torch.Tensor, iters: int, seed: int, weights: torch.Tensor | None = None) -> torch.Tensor:
        """K centroids of the rows data [n, D]: seeded random rows (drawn in proportion to `weights` when given),
        then `iters` Lloyd iterations, each row counting as its weight (a code that no row picks stays where it
        is; unit length under cosine)."""
        k = self.codebook_size
        generator = torch.Generator(device="cpu").manual_seed(seed)
        if weights is None:
            start = torch.randint(0, data.shape[0], (k,), generator=generator)
        else:
            start = torch.multinomial(weights.cpu().double(), k, replacement=True, generator=generator)
        centroids = data[start.to(data.device)].clone()
        row_weights = torch.ones(data.shape[0], device=data.device) if weights is None else weights.to(data.device).float()
        for _ in range(iters):
            ids = self.nearest_codes(data, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, ids, data * row_weights[:, None])
            counts = torch.zeros(k, device=data.device).index_add_(0, ids, row_weights)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None]
            if self.config.distance == "cosine":
                centroids = F.normalize(centroids, dim=-1)
        return centroids

    @property
    def restart_grace(self) -> float:
        """The running usage a code starts from when it is set (restarted, k-means, loaded): twice the dead-code
        threshold, about 70 steps at usage_decay 0.99 before it can be declared dead."""
        return 2 * self.config.dead_code_threshold

    @torch.no_grad()
    def protect_codes(self) -> None:
        """Give every code the restart grace: codes set on purpose (k-means, a loaded model to fine-tune) are not
        replaced by dead-code restart at the first steps, before they have had a chance to be used."""
        self.usage_count.fill_(self.restart_grace)

    @torch.no_grad()
    def set_codebook(self, codes: torch.Tensor) -> None:
        """Replace the K x D codebook (and the EMA statistics that go with it). Every code gets the restart grace:
        with a usage of zero, dead-code restart would replace the codes set here (k-means centroids) at step 1."""
        self.codebook.data.copy_(codes.to(self.codebook.dtype))
        self.protect_codes()
        if self.config.use_ema:
            self.ema_embed_sum.copy_(codes)
            self.ema_cluster_size.fill_(1.0)

    @torch.no_grad()
    def _training_updates(self, z: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor,
                          restart_rows: torch.Tensor | None = None, usage_counts: torch.Tensor | None = None) -> None:
        """EMA codebook update and dead-code restart (from `restart_rows`, default z; a code's running usage from
        `usage_counts`, default counts), with statistics summed across processes."""
        counts = sum_over_processes(counts.clone())
        usage_counts = counts if usage_counts is None else sum_over_processes(usage_counts.clone())
        if self.config.use_ema:
            sums = torch.zeros_like(self.ema_embed_sum).index_add_(0, ids, z.float())
            sums = sum_over_processes(sums)
            decay = self.config.ema_decay
            self.ema_cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
            self.ema_embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
            total = self.ema_cluster_size.sum()
            eps, k = self.config.ema_epsilon, self.codebook_size
            smoothed = (self.ema_cluster_size + eps) / (total + k * eps) * total  # Laplace smoothing
            self.codebook.copy_(self.ema_embed_sum / smoothed.unsqueeze(1))
        decay = self.config.usage_decay
        self.usage_count.mul_(decay).add_(usage_counts, alpha=1 - decay)
        if self.config.dead_code_threshold > 0:
            self._restart_dead_codes(z if restart_rows is None else restart_rows)

    def _restart_dead_codes(self, z: torch.Tensor) -> None:
        """Replace codes whose running usage fell below the threshold by distinct encoder outputs of this batch.
        Written with masks, not by listing the dead codes: no value is read back from the device."""
        dead_codes = self.usage_count < self.config.dead_code_threshold
        dead = dead_codes.unsqueeze(1)
        rank_among_dead = (torch.cumsum(dead_codes.long(), 0) - 1).clamp_min(0) % z.shape[0]
        pick = torch.randperm(z.shape[0], device=z.device)[rank_among_dead]  # distinct while there are enough rows
        replacement = broadcast_from_rank0(z[pick].float().contiguous())
        self.codebook.data.copy_(torch.where(dead, replacement.to(self.codebook.dtype), self.codebook.data))
        if self.config.use_ema:
            self.ema_cluster_size.copy_(torch.where(dead[:, 0], 1.0, self.ema_cluster_size))
            self.ema_embed_sum.copy_(torch.where(dead, replacement, self.ema_embed_sum))
        # A grace period before a restarted code can be declared dead again.
        self.usage_count.copy_(torch.where(dead[:, 0], self.restart_grace, self.usage_count))


def rotate_to(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Rotation trick (Fifty et al., 2024): forward value = codes, gradient = a fixed rotation and rescaling
    of the incoming gradient, so the angle between z and its code reaches the encoder. Rows of [N, D]."""
    eps = 1e-6
    z_norm = z.norm(dim=-1, keepdim=True).clamp_min(eps)
    code_norm = codes.norm(dim=-1, keepdim=True).clamp_min(eps)
    u = (z / z_norm).detach()
    q = (codes / code_norm).detach()
    w = F.normalize(u + q, dim=-1, eps=eps).detach()
    # R z = z - 2 w (w . z) + 2 q (u . z): the Householder pair that maps direction u onto q.
    rotated = z - 2 * w * (w * z).sum(-1, keepdim=True) + 2 * q * (u * z).sum(-1, keepdim=True)
    return rotated * (code_norm / z_norm).detach()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor summed over the processes of a distributed run (in place); itself in a single process."""
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor on every process (in place), so that every process makes the same codebook change."""
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor
