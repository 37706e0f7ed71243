"""Peer benchmark of vector quantizers on shapes: same encoder/decoder, data, seed and steps.

    pip install vector-quantize-pytorch      # optional: row (b) is skipped without it
    python benchmarks/quantizers.py [--steps 500] [--batch-size 16] [--codebook-size 1024] [--seed 0]

Rows: (a) textbook plain VQ (uniform +-1/K init, beta = 0.25, lookup in the full latent width, no
tricks); (b) vector-quantize-pytorch's VectorQuantize with the anti-collapse settings its README recommends
(low-dimensional cosine-similarity codebook, k-means init, EMA decay 0.8, dead-code expiry at 2);
(c) ours: QuantizerConfig defaults, plus variants that toggle one option; (d) FSQ with levels [8, 5, 5, 5]
(1,000 codes, the FSQ paper's choice for a 1k codebook); (e) LFQ with 10 bits (1,024 codes) and its entropy
loss. (d) and (e) project the 16 latent channels to 4 / 10 and back, as (c) does to 8; (f) multi-scale (VAR:
scales 1, 2, 3, 4, 5, 6, 8, 10, 13, 16 on the 16x16 grid, phi as VAR's) and (g) residual depth 4 (RQ-VAE) look up
the 16 channels themselves in one shared codebook, with the anti-collapse options (k-means init on every step's
residuals, dead-code restart, rotation trick) and once without them; (f) also with a cosine lookup (VAR's
using_znorm), EMA codebook updates and faster expiry (vector-quantize-pytorch's recommended 0.8 and 2), with L2 and
EMA 0.99, with the codebook at 10 x the lr of the rest (CODEBOOK_LR_SCALE), with a cosine lr (COSINE_LR), and with
the cosine lr and the 1x1 and 2x2 scales restarting codes at every batch (coarse_restart_steps). Their usage per scale / depth is a
table of its own; a scale is collapsed when it uses under 10 % of the codes its positions could reach (metrics.collapsed).
Training uses L1 + the quantizer's loss (no GAN), so the rows differ only in the quantizer. Writes
benchmarks/results/quantizers.{json,md}.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizerConfig, QuantizerConfig
from image_tokenizer.data.shapes import HELDOUT_SEED, TRAIN_SEED, generate_arrays
from image_tokenizer.image_processing import normalize, postprocess
from image_tokenizer.metrics import codebook_usage, hole_recall, psnr, step_usage
from image_tokenizer.modeling import VQModel
from image_tokenizer.modeling.quantizer import QuantizerOutput, usage_and_perplexity
from training.codebook import kmeans_init, parameter_groups
from training.train_tokenizer import warmup_cosine

VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)  # VAR's published schedule; its last scale is this model's 16x16 grid
ANTI_COLLAPSE = {"dead_code_threshold": 1.0, "gradient": "rotation"}  # with k-means init (KMEANS_ROWS)
NO_ANTI_COLLAPSE = {"dead_code_threshold": 0.0, "gradient": "ste"}
CODEBOOK_LR_SCALE = {"f_multiscale_var_codebook_lr_10": 10.0}  # the codebook's lr / --lr (train_tokenizer's codebook_lr_scale)
# Rows whose lr follows a cosine from --lr to a tenth of it over the steps (train_tokenizer's schedule, no warm-up);
# the others keep --lr constant.
COSINE_LR = ("f_multiscale_var_cosine_lr", "f_multiscale_var_coarse_restart", "f_multiscale_var_coarse_restart_share_1")
MIN_LR_RATIO = 0.1


def stacked_quantizers(k: int, z: int) -> dict[str, QuantizerConfig]:
    """Rows (f) and (g): multi-scale and residual quantizers on the latent itself, with and without anti-collapse."""
    multiscale = {"kind": "multiscale", "scales": VAR_SCALES, "codebook_size": k, "codebook_dim": z}
    residual = {"kind": "residual", "depth": 4, "codebook_size": k, "codebook_dim": z}
    return {
        "f_multiscale_var": QuantizerConfig(**multiscale, **ANTI_COLLAPSE),
        # vector-quantize-pytorch's recommended expiry and EMA, with VAR's cosine lookup (using_znorm)
        "f_multiscale_var_cosine_like_b": QuantizerConfig(**multiscale, distance="cosine", gradient="rotation",
                                                          dead_code_threshold=2.0, usage_decay=0.8, use_ema=True,
                                                          ema_decay=0.8),
        "f_multiscale_var_codebook_lr_10": QuantizerConfig(**multiscale, **ANTI_COLLAPSE),  # CODEBOOK_LR_SCALE
        "f_multiscale_var_ema": QuantizerConfig(**multiscale, **ANTI_COLLAPSE, use_ema=True),  # L2, EMA 0.99
        "f_multiscale_var_cosine_lr": QuantizerConfig(**multiscale, **ANTI_COLLAPSE),  # COSINE_LR
        # the 1x1 and 2x2 scales restart half of min(K, their lookups) at every batch, with the cosine lr
        "f_multiscale_var_coarse_restart": QuantizerConfig(**multiscale, **ANTI_COLLAPSE, coarse_restart_steps=2,
                                                           coarse_restart_share=0.5),
        "f_multiscale_var_coarse_restart_share_1": QuantizerConfig(**multiscale, **ANTI_COLLAPSE, coarse_restart_steps=2,
                                                                   coarse_restart_share=1.0),  # every 1x1, 2x2 row
        "f_multiscale_var_coarse_restart_share_1_constant_lr": QuantizerConfig(
            **multiscale, **ANTI_COLLAPSE, coarse_restart_steps=2, coarse_restart_share=1.0),
        "f_multiscale_no_anti_collapse": QuantizerConfig(**multiscale, **NO_ANTI_COLLAPSE),
        "g_residual_depth_4": QuantizerConfig(**residual, **ANTI_COLLAPSE),
        "g_residual_no_anti_collapse": QuantizerConfig(**residual, **NO_ANTI_COLLAPSE),
    }


def uses_kmeans(kind: str) -> bool:
    """Whether a row starts from our training recipe's k-means init (ours, and the stacked rows with anti-collapse)."""
    return kind.startswith("c_ours") or (kind.startswith(("f_", "g_")) and "no_anti_collapse" not in kind)


class LucidrainsQuantizer(nn.Module):
    """Adapter: vector-quantize-pytorch's VectorQuantize behind our quantizer interface."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.codebook_size = codebook_size
        self.vq = VectorQuantize(
            dim=dim, codebook_size=codebook_size, codebook_dim=codebook_dim, use_cosine_sim=True,
            kmeans_init=True, kmeans_iters=10, threshold_ema_dead_code=2, decay=0.8, commitment_weight=0.25,
            accept_image_fmap=True,
        )

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        quantized, ids, loss = self.vq(z)
        counts = torch.bincount(ids.reshape(-1), minlength=self.codebook_size).float()
        usage, perplexity = usage_and_perplexity(counts)
        zero = loss.new_zeros(())
        return QuantizerOutput(quantized, ids, loss.sum(), zero, zero, usage, perplexity)


def build(kind: str, args: argparse.Namespace) -> VQModel:
    k, d = args.codebook_size, args.codebook_dim
    quantizers = {
        "a_lecture_plain_vq": QuantizerConfig(codebook_size=k, codebook_dim=args.z_channels, codebook_init="uniform",
                                              l2_normalize=False),
        "c_ours_default": QuantizerConfig(codebook_size=k, codebook_dim=d),
        "c_ours_dead_code_restart": QuantizerConfig(codebook_size=k, codebook_dim=d, dead_code_threshold=1.0),
        "c_ours_ema": QuantizerConfig(codebook_size=k, codebook_dim=d, use_ema=True, dead_code_threshold=0.0),
        "c_ours_ema_restart": QuantizerConfig(codebook_size=k, codebook_dim=d, use_ema=True, dead_code_threshold=1.0),
        "c_ours_ema_restart_decay_0.9": QuantizerConfig(codebook_size=k, codebook_dim=d, use_ema=True,
                                                        dead_code_threshold=1.0, ema_decay=0.9),
        "c_ours_restart_rotation": QuantizerConfig(codebook_size=k, codebook_dim=d, dead_code_threshold=1.0,
                                                   gradient="rotation"),
        "c_ours_ema_restart_rotation": QuantizerConfig(codebook_size=k, codebook_dim=d, use_ema=True,
                                                       dead_code_threshold=1.0, gradient="rotation"),
        "c_ours_ema_0.8_restart_2": QuantizerConfig(codebook_size=k, codebook_dim=d, use_ema=True, ema_decay=0.8,
                                                    dead_code_threshold=2.0, usage_decay=0.8),
        # (b)'s settings in our quantizer: EMA 0.8, expiry at 2, rotation trick (its default since 1.17)
        "c_ours_like_b": QuantizerConfig(codebook_size=k, codebook_dim=d, use_ema=True, ema_decay=0.8,
                                         dead_code_threshold=2.0, usage_decay=0.8, gradient="rotation"),
        "c_ours_no_l2": QuantizerConfig(codebook_size=k, codebook_dim=d, l2_normalize=False, dead_code_threshold=0.0),
        "d_fsq_8_5_5_5": QuantizerConfig(kind="fsq", levels=[8, 5, 5, 5]),
        "e_lfq_10_bits": QuantizerConfig(kind="lfq", bits=10),
        **stacked_quantizers(k, args.z_channels),
    }
    base = QuantizerConfig(codebook_size=k, codebook_dim=args.z_channels)
    config = ImageTokenizerConfig(
        resolution=64, ch=args.ch, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=args.z_channels, norm_groups=8,
        use_mid_attention=False, use_quant_conv=False, use_post_quant_conv=False,
        quantizer=quantizers.get(kind, base),
    )
    torch.manual_seed(args.seed)
    model = VQModel(config)  # identical encoder/decoder initialisation for every row
    if kind == "b_vector_quantize_pytorch":
        model.quantizer = LucidrainsQuantizer(args.z_channels, k, d)
    return model


def run(kind: str, args: argparse.Namespace, train_images: np.ndarray, held: np.ndarray, holes: np.ndarray) -> dict:
    model = build(kind, args)
    preprocessing = model.config.preprocessing
    optimizer = torch.optim.Adam(parameter_groups(model, args.lr, CODEBOOK_LR_SCALE.get(kind, 1.0)), lr=args.lr)
    cosine = warmup_cosine(0, args.steps - 1, MIN_LR_RATIO)  # the last step at MIN_LR_RATIO
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine if kind in COSINE_LR else lambda step: 1.0)
    rng = np.random.default_rng(args.seed)
    to_input = lambda a: normalize(torch.from_numpy(a).permute(0, 3, 1, 2), preprocessing)
    if uses_kmeans(kind):  # our training recipe's k-means init from the first batches
        first = [to_input(train_images[rng.integers(0, len(train_images), args.batch_size)]) for _ in range(4)]
        kmeans_init(model, first, iters=10, accelerator=argparse.Namespace(num_processes=1))
    times, k = [], model.quantizer.codebook_size
    model.train()
    for step in range(args.steps):
        batch = to_input(train_images[rng.integers(0, len(train_images), args.batch_size)])
        start = time.perf_counter()
        out = model(batch)
        loss = (out.reconstruction - batch).abs().mean() + out.quantizer.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        times.append(time.perf_counter() - start)
        if (step + 1) % args.print_every == 0:
            coarsest = "" if out.quantizer.step_usage is None else f", first step {float(out.quantizer.step_usage[0]) * k:.0f} codes"
            print(f"  {kind} step {step + 1}: loss {float(loss.detach()):.4f} batch usage {float(out.quantizer.usage):.3f}{coarsest}", flush=True)
    model.eval()
    k = model.quantizer.codebook_size  # fsq's 1,000 codes differ from --codebook-size
    counts = torch.zeros(k, dtype=torch.float64)
    recons, ids = [], []
    with torch.no_grad():
        for i in range(0, len(held), 100):
            x = to_input(held[i : i + 100])
            out = model(x)
            counts += torch.bincount(out.quantizer.ids.reshape(-1), minlength=k).double()
            recons.append(postprocess(out.reconstruction, preprocessing, "np"))
            ids.append(out.quantizer.ids)
    recon = np.concatenate(recons)
    usage, perplexity = codebook_usage(counts)
    per_step = {} if out.quantizer.step_usage is None else {"usage_by_step": held_out_step_usage(model, torch.cat(ids))}
    return {
        "quantizer": kind,
        "seed": args.seed,
        "codebook_size": k,
        "heldout_psnr_db": float(np.mean(psnr(held, recon))),
        "heldout_codebook_usage": usage,
        "heldout_perplexity": perplexity,
        "heldout_hole_recall": hole_recall(recon, holes),
        "seconds_per_step": statistics.median(times),
        "final_train_loss": float(loss.detach()),
        **per_step,
    }


def held_out_step_usage(model: VQModel, ids: torch.Tensor) -> list[dict]:
    """Each scale's or depth's usage over the held-out ids (metrics.step_usage: codes used, reachable, collapsed)."""
    steps = model.quantizer.step_ids(ids)
    counts = torch.stack([torch.bincount(step.reshape(-1), minlength=model.quantizer.codebook_size) for step in steps])
    return step_usage(counts, model.quantizer.step_labels, [step.numel() for step in steps])


def step_usage_lines(rows: list[dict]) -> list[str]:
    """The per-scale / per-depth sub-table: codes used of those reachable, usage of the codebook, perplexity."""
    stacked = [r for r in rows if r.get("usage_by_step")]
    if not stacked:
        return []
    lines = ["", ("Usage per scale (multiscale) or depth (residual) on the held-out images: codes used / codes its "
                  "positions could reach (min(K, positions x images)), perplexity in brackets; **collapsed** when "
                  "under 10 % of the reachable codes."), ""]
    for row in stacked:
        lines += [f"`{row['quantizer']}` (seed {row.get('seed', 0)}):", "",
                  "| " + " | ".join(step["step"] for step in row["usage_by_step"]) + " |",
                  "|" + "---|" * len(row["usage_by_step"]),
                  "| " + " | ".join(step_cell(step) for step in row["usage_by_step"]) + " |", ""]
    return lines


def collapsed_cell(row: dict) -> str:
    """The main table's count of collapsed scales / depths ("-" for one lookup per position)."""
    steps = row.get("usage_by_step")
    if not steps:
        return "-"
    return f"{sum(step['collapsed'] for step in steps)} of {len(steps)}"


def step_cell(step: dict) -> str:
    cell = f"{step['codes_used']}/{step['reachable']} ({step['perplexity']:.1f})"
    return f"**collapsed** {cell}" if step["collapsed"] else cell


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings every quantizer comparison shares: model width, data, steps, seed, where results go."""
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ch", type=int, default=16)
    parser.add_argument("--z-channels", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--heldout-images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--print-every", type=int, default=100, help="steps between progress lines")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))


def seed_summary(rows: list[dict]) -> list[str]:
    """Markdown rows with the mean and range of PSNR and usage for every quantizer run with several seeds."""
    lines = []
    for kind in dict.fromkeys(r["quantizer"] for r in rows):
        runs = [r for r in rows if r["quantizer"] == kind]
        if len(runs) < 2:
            continue
        psnrs = [r["heldout_psnr_db"] for r in runs]
        usages = [r["heldout_codebook_usage"] for r in runs]
        lines.append(
            f"| {kind} | {len(runs)} | {statistics.mean(psnrs):.2f} ({min(psnrs):.2f} to {max(psnrs):.2f}) | "
            f"{statistics.mean(usages):.3f} ({min(usages):.3f} to {max(usages):.3f}) |"
        )
    return lines


def table_lines(results: dict) -> list[str]:
    """The results file's markdown: commands, machine, the main table, the seed summary, the per-step usage."""
    args, rows = results["settings"], results["rows"]
    lines = [
        "# Quantizer benchmark (shapes 64x64 -> 16x16)",
        "",
        "Commands (later `--only` runs replaced or added rows, same settings otherwise):  ",
        *[f"`{c}`  " for c in results["commands"]],
        *[f"{note}  " for note in results.get("notes", [])],
        machine_line(results["machine"]) + "  ",
        (f"Same encoder/decoder (ch={args['ch']}, z={args['z_channels']}), {args['steps']} steps of batch "
        f"{args['batch_size']}, K={args['codebook_size']} (FSQ: 1,000), L1 + the quantizer's loss; metrics on "
        f"{args['heldout_images']} held-out images. "
        "The seed sets the initialisation and the batch order (the same for every row of a seed)."),
        "",
        ("| quantizer | seed | PSNR (dB) | usage | perplexity | hole recall | s/step | load (1 min, before-after) | "
         "collapsed scales / depths |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        load = row.get("load_average_1min")
        load_text = f"{load['before']:.1f}-{load['after']:.1f}" if load else "not recorded"
        lines.append(
            f"| {row['quantizer']} | {row.get('seed', 0)} | {row['heldout_psnr_db']:.2f} | "
            f"{row['heldout_codebook_usage']:.3f} | {row['heldout_perplexity']:.1f} | {row['heldout_hole_recall']:.3f} | "
            f"{row['seconds_per_step']:.3f} | {load_text} | {collapsed_cell(row)} |"
        )
    summary = seed_summary(rows)
    if summary:
        lines += ["", "Over seeds (mean, and min to max), for quantizers run with more than one seed:", "",
                  "| quantizer | seeds | PSNR (dB) | usage |", "|---|---|---|---|", *summary]
    lines += step_usage_lines(rows)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser)
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--codebook-dim", type=int, default=8)
    parser.add_argument("--only", nargs="*", help="run only these rows, replacing them in an existing results file")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    train_images, _ = generate_arrays(args.train_images, seed=TRAIN_SEED, num_workers=2)
    held, holes = generate_arrays(args.heldout_images, seed=HELDOUT_SEED)
    kinds = ["a_lecture_plain_vq", "b_vector_quantize_pytorch", "c_ours_default", "c_ours_dead_code_restart",
             "c_ours_ema", "c_ours_ema_restart", "c_ours_ema_restart_decay_0.9", "c_ours_restart_rotation",
             "c_ours_ema_restart_rotation", "c_ours_ema_0.8_restart_2", "c_ours_like_b", "c_ours_no_l2",
             "d_fsq_8_5_5_5", "e_lfq_10_bits", *stacked_quantizers(args.codebook_size, args.z_channels)]
    out = Path(args.output_dir)
    rows = []
    for kind in [k for k in kinds if not args.only or k in args.only]:
        if kind.startswith("b_"):
            try:
                import vector_quantize_pytorch  # noqa: F401
            except ImportError:
                print("skipping (b): pip install vector-quantize-pytorch")
                continue
        print(f"{kind} ...", flush=True)
        load_before = os.getloadavg()[0]  # the CPU is shared: seconds per step depend on what else ran
        rows.append(run(kind, args, train_images, held, holes))
        rows[-1]["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
        print(json.dumps(rows[-1]), flush=True)

    # Read the earlier results only now, under a lock, so --only runs that overlap in time keep each other's rows.
    out.mkdir(parents=True, exist_ok=True)
    lock = os.open(out, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # dropped when the process exits
    previous = out / "quantizers.json"
    kept, commands, notes = [], [], []  # notes: what a reader must know about rows of different code versions
    if args.only and previous.is_file():
        old = json.loads(previous.read_text())
        kept = [r for r in old["rows"] if (r["quantizer"], r.get("seed", 0)) not in {(k, args.seed) for k in args.only}]
        commands = old.get("commands", [old["command"]])
        notes = old.get("notes", [])
    order = lambda r: (kinds.index(r["quantizer"]) if r["quantizer"] in kinds else len(kinds), r.get("seed", 0))
    rows = sorted(kept + rows, key=order)
    command = " ".join(["python", "benchmarks/quantizers.py", *sys.argv[1:]])
    results = {
        "command": command,
        "commands": commands + [command],  # --only runs replace rows of an earlier run with the same settings
        "notes": notes,
        "machine": machine_info(),
        "settings": vars(args),
        "rows": rows,
    }
    write_results(out, "quantizers", results, table_lines(results))


if __name__ == "__main__":
    main()
