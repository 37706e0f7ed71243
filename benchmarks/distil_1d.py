"""A 1D tokenizer distilled from a 2D one (training/distil_1d.py), for N = 16, 32 and 64 tokens, against the proxy's
own grid: PSNR, SSIM and codebook usage on the held-out emoji, after stage 1 and after stage 2, and the
sequence-length saving.

    python benchmarks/distil_1d.py [--tokens 16 32 64] [--config training/configs/emoji64_titok_distil_cpu.json]
    python benchmarks/distil_1d.py --tokens 32 --runs-dir /tmp/distil --name distil_1d_try -- --stage1_steps 100

Each N trains with the config (its vit.num_latent_tokens set to N; arguments after `--` override any field, as
flags of training/distil_1d.py), runs to the end of stage 1, is scored, resumes from its checkpoint for stage 2
and is scored again; a later call goes on from a run's last checkpoint (the GPU job runs in segments). Every model, the proxy included, is scored on the same held-out images (the emoji test split,
748 images, both styles, on white). Writes benchmarks/results/NAME.{json,md} with the command, the machine and
the load average; run folders go under --runs-dir (not committed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
import numpy as np
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImageTokenizer
from image_tokenizer.evaluation import evaluate_tokenizer, load_eval_set, reconstruction_metrics
from image_tokenizer.fileio import atomic_write_text

METRICS = ("psnr_db", "ssim", "codebook_usage", "perplexity")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def score(tokenizer: ImageTokenizer, held_out) -> dict:
    metrics = evaluate_tokenizer(tokenizer, held_out.images, labels=held_out.labels)
    return {name: round(metrics[name], 4) for name in METRICS}


def mean_image_scores(held_out) -> dict:
    """A reference: every image replaced by the held-out set's mean image (the best one constant image can do in
    MSE), scored as the tokenizers are."""
    mean = np.repeat(held_out.images.mean(axis=0, keepdims=True).round().astype(np.uint8), len(held_out.images), axis=0)
    metrics = reconstruction_metrics(held_out.images, mean)
    return {"psnr_db": round(metrics["psnr_db"], 4), "ssim": round(metrics["ssim"], 4)}


def last_row(metrics_path: Path, stage: int) -> dict:
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return next((row for row in reversed(rows) if row["stage"] == stage), {})


def distil_one(tokens: int, args: argparse.Namespace, held_out, proxy_ids: int) -> dict:
    """Train stage 1, score it, resume for stage 2, score again. Resumable: a call that finds the run's checkpoints
    goes on from the last one (a scored stage 1 is kept in stage1.json, a finished row in row.json); the seconds
    are wall and process CPU of the calls that ran each stage."""
    from training.distil_1d import parse_config as parse_distil
    from training.distil_1d import train

    out = Path(args.runs_dir) / f"n{tokens}"
    if (out / "row.json").is_file():
        return json.loads((out / "row.json").read_text())
    argv = ["--config", args.config, "--vit.num_latent_tokens", str(tokens), "--output_dir", str(out),
            "--model_name", f"emoji-64-titok-{tokens}", "--eval_images", "0", "--no_progress", *args.extra]
    config, _ = parse_distil(argv)
    row = json.loads((out / "stage1.json").read_text()) if (out / "stage1.json").is_file() else {}
    if not row:
        wall, cpu = time.perf_counter(), cpu_seconds()
        summary = train(config, resume=True, stop_at=config.stage1_steps)  # resume: from a checkpoint if there is one
        row = {"tokens": tokens, "sequence_saving": round(proxy_ids / tokens, 2), "stage1_wall_s": round(time.perf_counter() - wall, 1),
               "stage1_cpu_s": round(cpu_seconds() - cpu, 1)}
        row["after_stage1"] = score(ImageTokenizer(summary["model"].config, summary["model"].eval()), held_out)
        row["stage1_final_train_row"] = last_row(out / "metrics.jsonl", 1)
        atomic_write_text(out / "stage1.json", json.dumps(row, indent=2) + "\n")
    wall, cpu = time.perf_counter(), cpu_seconds()
    summary = train(config, resume=True)
    row["stage2_wall_s"], row["stage2_cpu_s"] = round(time.perf_counter() - wall, 1), round(cpu_seconds() - cpu, 1)
    final = ImageTokenizer.from_pretrained(summary["final_dir"])  # what was saved, loaded back
    row["after_stage2"] = score(final, held_out)
    row["stage2_final_train_row"] = last_row(out / "metrics.jsonl", 2)
    row.update(stage1_steps=config.stage1_steps, stage2_steps=config.stage2_steps, batch_size=config.batch_size,
               vit=final.config.to_dict()["vit"], codebook_size=final.config.quantizer.codebook_size,
               load_average_after=round(os.getloadavg()[0], 2))
    atomic_write_text(out / "row.json", json.dumps(row, indent=2) + "\n")
    return row


def table(results: dict) -> list[str]:
    proxy, rows = results["proxy"], results["rows"]
    load = (f"shared with other jobs: load average {results['load_average_before']} before, "
            f"{results['load_averages_after']} after each N; seconds are wall")
    header = ("| tokenizer | ids per image | sequence saving | PSNR (dB) | SSIM | codebook usage | PSNR after stage 1 "
              "| SSIM after stage 1 | train wall s (stage 1 + 2) | train CPU s |")
    lines = [f"# 1D tokenizers distilled from {results['proxy_name']} (held-out emoji, {results['num_images']} images)",
             "", f"`{results['command']}`", "", f"{machine_line(results['machine'])} ({load})", "", header,
             "|---|---|---|---|---|---|---|---|---|---|",
             (f"| {results['proxy_name']} (proxy, {results['proxy_grid']} grid) | {results['proxy_ids']} | 1x | "
              f"{proxy['psnr_db']:.2f} | {proxy['ssim']:.3f} | {proxy['codebook_usage']:.3f} | | | | |")]
    for row in rows:
        s1, s2 = row["after_stage1"], row["after_stage2"]
        lines.append(f"| 1D, N = {row['tokens']} | {row['tokens']} | {row['sequence_saving']:g}x | {s2['psnr_db']:.2f} | "
                     f"{s2['ssim']:.3f} | {s2['codebook_usage']:.3f} | {s1['psnr_db']:.2f} | {s1['ssim']:.3f} | "
                     f"{row['stage1_wall_s']:.0f} + {row['stage2_wall_s']:.0f} | "
                     f"{row['stage1_cpu_s']:.0f} + {row['stage2_cpu_s']:.0f} |")
    if "mean_image" in results:
        mean = results["mean_image"]
        lines.append(f"| reference: the held-out mean image for every image | 0 | | {mean['psnr_db']:.2f} | "
                     f"{mean['ssim']:.3f} | | | | | |")
    if rows:
        first = rows[0]
        sizes = {k: first["vit"][k] for k in ("encoder_width", "encoder_layers", "decoder_width", "decoder_layers",
                                              "encoder_patch_size")}
        lines += ["", (f"Each 1D tokenizer: {first['stage1_steps']} stage-1 steps (cross-entropy on the proxy's ids) "
                       f"and {first['stage2_steps']} stage-2 steps (decoder to pixels, L2), batch {first['batch_size']}, "
                       f"ViT {json.dumps(sizes)}, {first['codebook_size']} codes. Codebook usage is the share of each "
                       "tokenizer's own codebook used on these images. The last stage-1 training row of each run "
                       "(cross-entropy, share of the proxy's ids predicted) is in the JSON file.")]
        if not results["machine"].get("cuda"):
            lines += ["", ("A CPU budget of about ten minutes per N on two shared cores, far from TiTok's 1,000,000 + "
                           "500,000 steps: the rows compare N under one small budget, not the method's ceiling. The "
                           "full-size run is the GPU queue's job `distil-1d`.")]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--config", default=str(ROOT / "training/configs/emoji64_titok_distil_cpu.json"))
    parser.add_argument("--runs-dir", default="runs/distil_1d_benchmark")
    parser.add_argument("--num", type=int, default=0, help="held-out images (0 = the whole test split)")
    parser.add_argument("--data", default="emoji", help="the held-out images: 'emoji' (its test split), or the test "
                        "split saved by benchmarks/emoji_data.py")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="distil_1d")
    parser.add_argument("extra", nargs="*", help="after --: flags of training/distil_1d.py for every N")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    proxy_name = config.get("proxy", "emoji-64-small")
    proxy = ImageTokenizer.from_pretrained(proxy_name)
    held_out = load_eval_set(args.data, proxy.config.resolution, proxy.config.preprocessing, num=args.num)
    results = {"command": "python " + " ".join(sys.argv), "machine": machine_info(),
               "load_average_before": round(os.getloadavg()[0], 2), "proxy_name": proxy_name,
               "num_images": len(held_out.images), "proxy": score(proxy, held_out), "rows": [],
               "mean_image": mean_image_scores(held_out),
               "proxy_grid": "x".join(map(str, proxy.config.grid_size)), "proxy_ids": math.prod(proxy.config.grid_size),
               "load_averages_after": []}
    for tokens in args.tokens:
        results["rows"].append(distil_one(tokens, args, held_out, results["proxy_ids"]))
        results["load_averages_after"].append(results["rows"][-1]["load_average_after"])
        write_results(args.output_dir, args.name, results, table(results))  # each N as soon as it is done


if __name__ == "__main__":
    main()
