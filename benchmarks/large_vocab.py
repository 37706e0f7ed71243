"""Large vocabularies into language models: load time, peak memory and file sizes of tokenizers with K up to
2^18 codes, and the cost of adding their tokens to a transformers text tokenizer and of the prior's TokenLayout.

    python benchmarks/large_vocab.py [--repeats 3]

Rows: a LlamaGen-sized vq vocabulary (K = 16,384), Cosmos's FSQ (levels [8, 8, 8, 5, 5, 5], K = 64,000),
an Open-MAGVIT2-sized LFQ (18 bits, K = 262,144) and a learned codebook of the same size (IBQ-like, dimension
8 here: the vocabulary costs, not the codebook's width, are what is measured). The encoder/decoder is tiny so the
vocabulary dominates. Each step runs in a fresh process, so its peak memory (ru_maxrss, minus the process's
peak after imports) is its own; times are medians over --repeats processes.
Writes benchmarks/results/large_vocab.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

QUANTIZERS = {
    "vq K=16,384": {"codebook_size": 16384, "codebook_dim": 8},
    "fsq [8,8,8,5,5,5] K=64,000": {"kind": "fsq", "levels": [8, 8, 8, 5, 5, 5]},
    "lfq 18 bits K=262,144": {"kind": "lfq", "bits": 18},
    "vq K=262,144 (dim 8)": {"codebook_size": 262144, "codebook_dim": 8},
}
STEPS = ("load", "extend_text_tokenizer", "token_layout")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tiny_text_tokenizer():
    """A small offline BPE tokenizer (what the image tokens are added to)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]", "[PAD]"])
    bpe.train_from_iterator(["a red disk and a blue star", "three shapes on black"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", pad_token="[PAD]")


def save_tokenizer(quantizer: dict, folder: Path) -> dict:
    """A tiny-architecture tokenizer with this quantizer, saved; returns the sizes of its vocabulary files."""
    import torch

    from image_tokenizer import ImageTokenizer, ImageTokenizerConfig

    torch.manual_seed(0)
    config = ImageTokenizerConfig(resolution=64, ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=8, norm_groups=4,
                                  use_mid_attention=False, quantizer=quantizer)
    ImageTokenizer(config).save_pretrained(folder)
    return {name: (folder / name).stat().st_size for name in ("vocab.json", "codebook.safetensors", "model.safetensors")}


def run_step(step: str, folder: str) -> dict:
    """One step in this (fresh) process: seconds and the peak memory it added."""
    from image_tokenizer import ImageTokenizer
    from image_tokenizer.prior.layout import TokenLayout

    text_tokenizer = tiny_text_tokenizer() if step == "extend_text_tokenizer" else None
    tokenizer = ImageTokenizer.from_pretrained(folder) if step != "load" else None
    base = peak_mb()
    start = time.perf_counter()
    if step == "load":
        tokenizer = ImageTokenizer.from_pretrained(folder)
        tokenizer.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens(tokenizer.vocab_size - 1))
    elif step == "extend_text_tokenizer":
        mapping = tokenizer.extend_text_tokenizer(text_tokenizer)
        assert len(mapping.image_to_text) == tokenizer.vocab_size
    else:
        layout = TokenLayout.for_tokenizer(tokenizer, folder)
        with tempfile.TemporaryDirectory() as out:
            layout.save(out)
            TokenLayout.load(out).check_tokenizer(tokenizer)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_added_mb": max(0.0, peak_mb() - base)}


def measure(step: str, folder: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, __file__, "--step", step, "--folder", str(folder)], env=env,
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_added_mb": statistics.median(r["peak_added_mb"] for r in runs)}


def table(rows: list[dict]) -> list[str]:
    lines = [("| quantizer | K | vocab.json | codebook.safetensors | load (s) | load peak (+MB) | "
             "extend_text_tokenizer (s) | its peak (+MB) | TokenLayout (s) |"), "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        files, steps = row["files_bytes"], row["steps"]
        lines.append(
            f"| {row['quantizer']} | {row['codebook_size']:,} | {files['vocab.json'] / 1024:,.1f} kB | "
            f"{files['codebook.safetensors'] / 1024:,.1f} kB | {steps['load']['seconds']:.3f} | "
            f"{steps['load']['peak_added_mb']:.0f} | {steps['extend_text_tokenizer']['seconds']:.2f} | "
            f"{steps['extend_text_tokenizer']['peak_added_mb']:.0f} | {steps['token_layout']['seconds']:.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # internal: one step in a fresh process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(run_step(args.step, args.folder)))
        return
    load_before, rows = os.getloadavg()[0], []
    with tempfile.TemporaryDirectory() as scratch:
        for name, quantizer in QUANTIZERS.items():
            folder = Path(scratch) / f"tokenizer-{len(rows)}"
            files = save_tokenizer(quantizer, folder)
            size = json.loads((folder / "config.json").read_text())["quantizer"]["codebook_size"]
            steps = {step: measure(step, folder, args.repeats) for step in STEPS}
            rows.append({"quantizer": name, "config": quantizer, "codebook_size": size, "files_bytes": files, "steps": steps})
            print(json.dumps(rows[-1]), flush=True)
    command = " ".join(["python", "benchmarks/large_vocab.py", *sys.argv[1:]])
    results = {"command": command, "machine": machine_info(), "settings": vars(args), "rows": rows,
               "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}
    load = results["load_average_1min"]
    lines = ["# Large vocabularies: files, load, text-tokenizer extension, TokenLayout", "",
             f"Command: `{command}`  ", machine_line(results["machine"]) + "  ",
             f"Load average (1 min) before and after: {load['before']:.1f}, {load['after']:.1f} (the CPU is shared).", "",
             ("Each step in a fresh process (median of the repeats); peak = ru_maxrss added by the step. `load` is "
             "`ImageTokenizer.from_pretrained` and one token <-> id round trip; `extend_text_tokenizer` adds the K "
             "image tokens and <boi>/<eoi> to a small BPE tokenizer (transformers' `add_tokens` is most of it); "
             "`TokenLayout` builds, saves, loads and checks a prior's layout (it hashes the K x D codebook)."), "",
             *table(rows)]
    write_results(Path(args.output_dir), "large_vocab", results, lines)


if __name__ == "__main__":
    main()
