"""A LlamaGen-VQ-16-sized tokenizer at 256x256, built through the LlamaGen converter: encode and decode
images/s and peak memory, and the memory of the K = 16,384 nearest-code lookup at batch 64.

    python benchmarks/published_size.py [--device cpu|cuda] [--encode-batch 64] [--decode-batch 16] [--save DIR]

Random weights (speed and memory do not depend on them), written in LlamaGen's own key layout and converted
with `image_tokenizer.convert`, so the real converter path is what gets measured. Each measurement runs in a
fresh process, so peak memory (ru_maxrss on CPU, max_memory_allocated on CUDA) belongs to that step alone.
Writes benchmarks/results/published_size_<device>.json and .md (or --name NAME); --save DIR also keeps the
converted tokenizer there (for `benchmarks/throughput.py --model DIR`).
"""

from __future__ import annotations

import argparse
import json
import resource
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

    tok = image_tokenizer.convert(checkpoint, format="llamagen", resolution=256).to(device)
    base = peak_memory_mb(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    ids = torch.from_numpy(rng.integers(0, 16384, (batch, 16, 16)))
    if task == "encode":
        step = lambda: tok.encode(images)
    elif task == "decode":
        step = lambda: tok.decode(ids, output_type="pt")
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
    parser.add_argument("--encode-batch", type=int, default=64)
    parser.add_argument("--decode-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--ch", type=int, default=VQ16["ch"], help="base width (default VQ-16's 128; a multiple of 32, smaller for a toy run)")
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

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "vq_ds16_c2i.pt"
        parameters = write_llamagen_checkpoint(checkpoint, args.ch)
        rows = [run_child("encode", checkpoint, args, args.encode_batch),
                run_child("decode", checkpoint, args, args.decode_batch),
                run_child("lookup", checkpoint, args, args.encode_batch)]
        if args.save:
            import image_tokenizer

            image_tokenizer.convert(str(checkpoint), format="llamagen", resolution=256).save_pretrained(args.save)
    machine = machine_info()
    results = {"command": " ".join(["python", "benchmarks/published_size.py", *sys.argv[1:]]), "machine": machine,
               "device": args.device, "config": {**VQ16, "ch": args.ch}, "parameters": parameters, "rows": rows}
    lines = [
        f"# LlamaGen-VQ-16-sized tokenizer at 256x256 ({args.device})", "",
        f"Command: `{results['command']}`", machine_line(machine), "",
        (f"Random weights in LlamaGen's layout, converted with `image_tokenizer.convert(..., format='llamagen')`: "
         f"{parameters:,} parameters, K = 16,384, d = 8, l2-normalised, 16x16 tokens per image. Each row ran in "
         "a fresh process; peak memory is that process's peak (model included), best of the timed calls."), "",
        "| step | batch | images/s | peak memory (MB) | memory before the step (MB) |", "|---|---|---|---|---|",
    ]
    names = {"encode": "`tok.encode(uint8 numpy batch)`", "decode": "`tok.decode(ids)`",
             "lookup": "nearest-code lookup alone (batch x 256 latents, K = 16,384)"}
    for row in rows:
        lines.append(f"| {names[row['task']]} | {row['batch']} | {row['images_per_s']:.2f} | "
                     f"{row['peak_memory_mb']:.0f} | {row['memory_before_step_mb']:.0f} |")
    write_results(args.output_dir, args.name or f"published_size_{args.device.split(':')[0]}", results, lines)


if __name__ == "__main__":
    main()
