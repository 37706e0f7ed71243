"""A LlamaGen-VQ-16-sized tokenizer at 256x256, built through the LlamaGen converter: encode and decode
images/s and peak memory, and the memory of the K = 16,384 nearest-code lookup at batch 64. With
--shape cosmos-di16x16, a Cosmos-DI16x16-shaped one (FSQ, 64,000 codes) instead.

    python benchmarks/published_size.py [--device cpu|cuda] [--encode-batch 64] [--decode-batch 16] [--save DIR]
    python benchmarks/published_size.py --shape cosmos-di16x16

Random weights (speed and memory do not depend on them), written in LlamaGen's own key layout and converted
with `image_tokenizer.convert`, so the real converter path is what gets measured. Each measurement runs in a
fresh process, so peak memory (ru_maxrss on CPU, max_memory_allocated on CUDA) belongs to that step alone.
Writes benchmarks/results/published_size_<device>.json and .md (or --name NAME); --save DIR also keeps the
converted tokenizer there (for `benchmarks/throughput.py --model DIR`). A Cosmos-shaped model is built and saved as
ours directly: its published form, a TorchScript pair, can only be written with NVIDIA's code (its conversion is
tested against that code in tests/test_convert_cosmos.py), and the converter yields this same module.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

VQ16 = {"resolution": 256, "ch": 128, "ch_mult": (1, 1, 2, 2, 4), "num_res_blocks": 2, "attn_resolutions": (16,),
        "z_channels": 256, "quantizer": {"codebook_size": 16384, "codebook_dim": 8, "l2_normalize": True}}
# NVIDIA's discrete_image config (Cosmos-Tokenizer networks/configs.py) with spatial_compression 16: Haar patches of
# 4, then two halvings; attn_resolutions [32] at its resolution 1024 meets no level, so attention is in the middle only.
COSMOS_DI16 = {"architecture": "cosmos", "resolution": 256, "ch": 128, "ch_mult": (2, 4, 4), "num_res_blocks": 2,
               "attn_resolutions": (), "z_channels": 256, "patch_size": 4,
               "quantizer": {"kind": "fsq", "levels": (8, 8, 8, 5, 5, 5)}}
SHAPES = {"vq16": VQ16, "cosmos-di16x16": COSMOS_DI16}


def write_cosmos_tokenizer(path: Path, ch: int = COSMOS_DI16["ch"]) -> int:
    """A Cosmos-DI16x16-shaped tokenizer with random weights, saved as ours; `ch` narrows it (a toy-size run)."""
    from image_tokenizer import ImageTokenizer, ImageTokenizerConfig

    torch.manual_seed(0)
    tok = ImageTokenizer(ImageTokenizerConfig(**{**COSMOS_DI16, "ch": ch}))
    tok.save_pretrained(path)
    return sum(p.numel() for p in tok.model.parameters())


def write_llamagen_checkpoint(path: Path, ch: int = VQ16["ch"]) -> int:
    """Our VQ-16-sized model with random weights, saved as LlamaGen saves it (`model` key, conv_blocks names);
    `ch` narrows it (a toy-size run of the same code path)."""
    from image_tokenizer import ImageTokenizerConfig
    from image_tokenizer.modeling import VQModel

    torch.manual_seed(0)
    model = VQModel(ImageTokenizerConfig(**{**VQ16, "ch": ch}))
    levels, mid = len(VQ16["ch_mult"]), {"block_1": "0", "attn_1": "1", "block_2": "2"}
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("quantizer.") and key != "quantizer.codebook":
            continue
        parts = key.split(".")
        if key == "quantizer.codebook":
            key = "quantize.embedding.weight"
        elif parts[1] == "mid":
            key = ".".join([parts[0], "mid", mid[parts[2]], *parts[3:]])
        elif parts[1] in ("down", "up"):
            level = int(parts[2]) if parts[1] == "down" else levels - 1 - int(parts[2])
            inner = "res" if parts[3] == "block" else parts[3]
            key = ".".join([parts[0], "conv_blocks", str(level), inner, *parts[4:]])
        state[key] = tensor
    state["quantize.codebook_used"] = torch.zeros(65536)
    torch.save({"model": state}, path)
    return sum(p.numel() for p in model.parameters())


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(task: str, checkpoint: str, device: str, batch: int, repeats: int) -> dict:
    """One step in this (fresh) process: images/s over `repeats` timed calls after a warm-up, and peak memory."""
    import numpy as np

    import image_tokenizer

    if Path(checkpoint).is_dir():  # a tokenizer saved as ours (the Cosmos shape)
        tok = image_tokenizer.ImageTokenizer.from_pretrained(checkpoint).to(device)
    else:
        tok = image_tokenizer.convert(checkpoint, format="llamagen", resolution=256).to(device)
    base = peak_memory_mb(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    ids = torch.from_numpy(rng.integers(0, tok.config.quantizer.codebook_size, (batch, 16, 16)))
    if task == "encode":
        step = lambda: tok.encode(images)
    elif task == "decode":
        step = lambda: tok.decode(ids, output_type="pt")
    elif getattr(tok.config.quantizer, "kind", "vq") != "vq":  # the quantizer alone on batch x 256 latents (FSQ: no codebook search)
        z = torch.randn(batch, tok.config.quantizer.codebook_dim, 16, 16, device=device)
        step = lambda: tok.model.quantizer.encode_ids(z)
    else:  # the nearest-code lookup alone: batch x 256 latents against 16,384 codes
        z = torch.randn(batch * 256, 8, device=device)
        codes = tok.model.quantizer.effective_codebook()
        step = lambda: tok.model.quantizer.nearest_codes(z, codes)
    step()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"task": task, "batch": batch, "seconds": times, "images_per_s": batch / best,
            "peak_memory_mb": peak_memory_mb(device), "memory_before_step_mb": base}


def run_child(task: str, checkpoint: Path, args: argparse.Namespace, batch: int) -> dict:
    command = [sys.executable, __file__, "--child", task, "--checkpoint", str(checkpoint), "--device", args.device,
               "--repeats", str(args.repeats), "--encode-batch", str(batch), "--threads", str(args.threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="vq16", help="which published model's shape")
    parser.add_argument("--encode-batch", type=int, default=64)
    parser.add_argument("--decode-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--ch", type=int, default=128, help="base width (default 128, as VQ-16 and Cosmos-DI; a multiple of 32, smaller for a toy run)")
    parser.add_argument("--save", help="also save the converted tokenizer in this folder")
    parser.add_argument("--name", help="results file name (default published_size_<device>)")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.checkpoint, args.device, args.encode_batch, args.repeats)))
        return

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.shape == "vq16":
            checkpoint = Path(tmp) / "vq_ds16_c2i.pt"
            parameters = write_llamagen_checkpoint(checkpoint, args.ch)
        else:
            checkpoint = Path(tmp) / args.shape
            parameters = write_cosmos_tokenizer(checkpoint, args.ch)
        rows = [run_child("encode", checkpoint, args, args.encode_batch),
                run_child("decode", checkpoint, args, args.decode_batch),
                run_child("lookup", checkpoint, args, args.encode_batch)]
        if args.save and args.shape == "vq16":
            import image_tokenizer

            image_tokenizer.convert(str(checkpoint), format="llamagen", resolution=256).save_pretrained(args.save)
        elif args.save:
            shutil.copytree(checkpoint, args.save, dirs_exist_ok=True)
    machine = {**machine_info(), "load_average_before": load_before, "load_average_after": os.getloadavg()}
    results = {"command": " ".join(["python", "benchmarks/published_size.py", *sys.argv[1:]]), "machine": machine,
               "device": args.device, "config": {**SHAPES[args.shape], "ch": args.ch}, "parameters": parameters,
               "rows": rows}
    title, description, lookup = describe(args.shape, parameters, args.ch)
    lines = [
        f"# {title} at 256x256 ({args.device})", "",
        f"Command: `{results['command']}`", machine_line(machine),
        (f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; after: "
        f"{', '.join(f'{v:.1f}' for v in machine['load_average_after'])} (the CPU is shared)"), "",
        (f"{description} Each row ran in a fresh process; peak memory is that process's peak (model included), "
        "best of the timed calls."), "",
        "| step | batch | images/s | peak memory (MB) | memory before the step (MB) |", "|---|---|---|---|---|",
    ]
    names = {"encode": "`tok.encode(uint8 numpy batch)`", "decode": "`tok.decode(ids)`", "lookup": lookup}
    for row in rows:
        lines.append(f"| {names[row['task']]} | {row['batch']} | {row['images_per_s']:.2f} | "
                     f"{row['peak_memory_mb']:.0f} | {row['memory_before_step_mb']:.0f} |")
    default_name = "published_size" + ("" if args.shape == "vq16" else f"_{args.shape.replace('-', '_')}")
    write_results(args.output_dir, args.name or f"{default_name}_{args.device.split(':')[0]}", results, lines)


def describe(shape: str, parameters: int, ch: int) -> tuple[str, str, str]:
    """(title, what was measured, the name of the quantizer-alone row) of a shape's results file."""
    if shape == "vq16":
        return ("LlamaGen-VQ-16-sized tokenizer",
                ("Random weights in LlamaGen's layout, converted with `image_tokenizer.convert(..., format='llamagen')`: "
                f"{parameters:,} parameters, K = 16,384, d = 8, l2-normalised, 16x16 tokens per image."),
                "nearest-code lookup alone (batch x 256 latents, K = 16,384)")
    return ("Cosmos-DI16x16-shaped tokenizer",
            ("Random weights in the architecture `image-tokenizer convert --format cosmos` builds (Haar patches of 4, "
            f"ch {ch}, ch_mult 2-4-4, 2 ResNet blocks, z 256, attention in the middle only): {parameters:,} parameters, "
            "FSQ levels [8, 8, 8, 5, 5, 5] (K = 64,000, d = 6), 16x16 tokens per image."),
            "FSQ quantizer alone (batch x 256 latents, no codebook search)")


if __name__ == "__main__":
    main()
