"""Published tokenizers at their real size, 256x256, built through their converters: encode and decode images/s
and peak memory, and the memory of the quantizer's lookup at batch 64.

    python benchmarks/published_size.py [--shape llamagen-vq16|open-magvit2-256-l|cosmos-di16x16] [--device cpu|cuda]
        [--encode-batch 64] [--decode-batch 16] [--save DIR] [--ch 32 --resolution 64 (a toy-size run)]

Shapes: LlamaGen's VQ-16 (K = 16,384 nearest-code lookup; the default) and Open-MAGVIT2-256-L (ch 128,
ch_mult 1,1,2,2,4, 4 ResNet blocks per level, LFQ with 18 bits: K = 262,144). Random weights (speed and memory
do not depend on them), written in the publisher's own layout (LlamaGen's `.pt`; Open-MAGVIT2's Lightning `.ckpt`
and yaml) and converted with `image_tokenizer.convert`, so the real converter path is what gets measured.
Cosmos-DI16x16 (Haar patches of 4, FSQ [8, 8, 8, 5, 5, 5]: K = 64,000) is built and saved as ours directly: its
published form, a TorchScript pair, can only be written with NVIDIA's code (its conversion is tested against
that code in tests/test_convert_cosmos.py), and the converter yields this same module. Each
measurement runs in a fresh process, so peak memory (ru_maxrss on CPU, max_memory_allocated on CUDA) belongs to
that step alone; the load average before and after each step is recorded (the CPU may be shared). Writes
benchmarks/results/published_size_<device>.json and .md for the default shape, published_size_<shape>_<device>
for the others (or --name NAME); --save DIR also keeps the converted tokenizer there.
"""

from __future__ import annotations

import argparse
import json
import os
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
MAGVIT2_256_L = {"architecture": "magvit2", "resolution": 256, "ch": 128, "ch_mult": (1, 1, 2, 2, 4),
                 "num_res_blocks": 4, "z_channels": 18, "use_mid_attention": False, "use_quant_conv": False,
                 "use_post_quant_conv": False, "quantizer": {"kind": "lfq", "bits": 18}}
MAGVIT2_YAML = """model:
  class_path: src.Open_MAGVIT2.models.lfqgan.VQModel
  init_args:
    ddconfig: {{double_z: false, z_channels: 18, resolution: 128, in_channels: 3, out_ch: 3, ch: {ch},
               ch_mult: [1, 1, 2, 2, 4], num_res_blocks: 4}}
    n_embed: 262144
    embed_dim: 18
    use_ema: false
data:
  init_args:
    validation: {{params: {{config: {{size: 256}}}}}}
"""
# NVIDIA's discrete_image config (Cosmos-Tokenizer networks/configs.py) with spatial_compression 16: Haar patches of
# 4, then two halvings; attn_resolutions [32] at its resolution 1024 meets no level, so attention is in the middle only.
COSMOS_DI16 = {"architecture": "cosmos", "resolution": 256, "ch": 128, "ch_mult": (2, 4, 4), "num_res_blocks": 2,
               "attn_resolutions": (), "z_channels": 256, "patch_size": 4,
               "quantizer": {"kind": "fsq", "levels": (8, 8, 8, 5, 5, 5)}}


def write_cosmos_tokenizer(path: Path, ch: int = COSMOS_DI16["ch"], resolution: int = 256) -> int:
    """A Cosmos-DI16x16-shaped tokenizer with random weights, saved as ours; `ch` and `resolution` shrink it (a
    toy-size run)."""
    from image_tokenizer import ImageTokenizer, ImageTokenizerConfig

    torch.manual_seed(0)
    tok = ImageTokenizer(ImageTokenizerConfig(**{**COSMOS_DI16, "ch": ch, "resolution": resolution}))
    tok.save_pretrained(path)
    return sum(p.numel() for p in tok.model.parameters())


def write_llamagen_checkpoint(path: Path, ch: int = VQ16["ch"], resolution: int = 256) -> int:
    """Our VQ-16-sized model with random weights, saved as LlamaGen saves it (`model` key, conv_blocks names);
    `ch` and `resolution` shrink it (a toy-size run of the same code path)."""
    from image_tokenizer import ImageTokenizerConfig
    from image_tokenizer.modeling import VQModel

    torch.manual_seed(0)
    sized = {"ch": ch, "resolution": resolution, "attn_resolutions": (resolution // 16,)}  # attention at the lowest level
    model = VQModel(ImageTokenizerConfig(**{**VQ16, **sized}))
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


def write_open_magvit2_checkpoint(path: Path, ch: int = MAGVIT2_256_L["ch"], resolution: int = 256) -> int:
    """An Open-MAGVIT2-256-L-shaped model with random weights, saved as Open-MAGVIT2 saves it: a Lightning `.ckpt`
    (our magvit2 modules use the published key names) beside its yaml; `ch` and `resolution` shrink it for a
    toy-size run."""
    from image_tokenizer import ImageTokenizerConfig
    from image_tokenizer.modeling import VQModel

    torch.manual_seed(0)
    model = VQModel(ImageTokenizerConfig(**{**MAGVIT2_256_L, "ch": ch, "resolution": resolution}))
    state = {k: v for k, v in model.state_dict().items() if k.startswith(("encoder.", "decoder."))}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.2.0"}, path)
    path.with_suffix(".yaml").write_text(MAGVIT2_YAML.format(ch=ch))
    return sum(p.numel() for p in model.parameters())


# --shape -> (its config, the converter's format (None: saved as ours), the checkpoint writer, its file name, a description)
SHAPES = {
    "llamagen-vq16": (VQ16, "llamagen", write_llamagen_checkpoint, "vq_ds16_c2i.pt",
                      "LlamaGen-VQ-16-sized tokenizer", "K = 16,384, d = 8, l2-normalised"),
    "open-magvit2-256-l": (MAGVIT2_256_L, "open-magvit2", write_open_magvit2_checkpoint, "imagenet_256_L.ckpt",
                           "Open-MAGVIT2-256-L-shaped tokenizer", "LFQ with 18 bits (K = 262,144)"),
    "cosmos-di16x16": (COSMOS_DI16, None, write_cosmos_tokenizer, "cosmos-di16x16",
                       "Cosmos-DI16x16-shaped tokenizer", "FSQ levels [8, 8, 8, 5, 5, 5] (K = 64,000)"),
}


def load_tokenizer(checkpoint: str, shape: str, resolution: int = 256):
    """The measured tokenizer: converted from the publisher's layout, or loaded as saved (Cosmos)."""
    import image_tokenizer

    format_name = SHAPES[shape][1]
    if format_name is None:
        return image_tokenizer.ImageTokenizer.from_pretrained(checkpoint)
    return image_tokenizer.convert(checkpoint, format=format_name, resolution=resolution)


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(task: str, checkpoint: str, shape: str, device: str, batch: int, repeats: int, resolution: int = 256) -> dict:
    """One step in this (fresh) process: images/s over `repeats` timed calls after a warm-up, and peak memory."""
    import numpy as np

    load = os.getloadavg()[0]
    tok = load_tokenizer(checkpoint, shape, resolution).to(device)
    base = peak_memory_mb(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)
    side = resolution // 16  # every shape here downsamples 16 times: 16x16 tokens at 256x256
    ids = torch.from_numpy(rng.integers(0, tok.config.quantizer.codebook_size, (batch, side, side)))
    if task == "encode":
        step = lambda: tok.encode(images)
    elif task == "decode":
        step = lambda: tok.decode(ids, output_type="pt")
    elif tok.config.quantizer.kind == "vq":  # the nearest-code lookup alone: batch x 256 latents against K codes
        z = torch.randn(batch * side * side, tok.config.quantizer.codebook_dim, device=device)
        codes = tok.model.quantizer.effective_codebook()
        step = lambda: tok.model.quantizer.nearest_codes(z, codes)
    else:  # an implicit codebook's lookup alone, on the quantizer's [B, C, 16, 16] input
        z = torch.randn(batch, tok.model.quantizer.dim, side, side, device=device)
        step = lambda: tok.model.quantizer.encode_ids(z)
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
            "peak_memory_mb": peak_memory_mb(device), "memory_before_step_mb": base,
            "load_average_1min": [load, os.getloadavg()[0]]}


def run_child(task: str, checkpoint: Path, args: argparse.Namespace, batch: int) -> dict:
    command = [sys.executable, __file__, "--child", task, "--checkpoint", str(checkpoint), "--shape", args.shape,
               "--device", args.device,
               "--repeats", str(args.repeats), "--encode-batch", str(batch), "--threads", str(args.threads),
               "--resolution", str(args.resolution)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="llamagen-vq16", choices=sorted(SHAPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encode-batch", type=int, default=64)
    parser.add_argument("--decode-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--ch", type=int, default=128, help="base width (default the published 128; a multiple of 32, smaller for a toy run)")
    parser.add_argument("--resolution", type=int, default=256, help="image side (default the published 256; a multiple of 16, smaller for a toy run)")
    parser.add_argument("--save", help="also save the converted tokenizer in this folder")
    parser.add_argument("--name", help="results file name (default published_size_<device>)")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.checkpoint, args.shape, args.device, args.encode_batch, args.repeats,
                                 args.resolution)))
        return

    config, format_name, write_checkpoint, file_name, title, quantizer = SHAPES[args.shape]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / file_name
        parameters = write_checkpoint(checkpoint, args.ch, args.resolution)
        rows = [run_child("encode", checkpoint, args, args.encode_batch),
                run_child("decode", checkpoint, args, args.decode_batch),
                run_child("lookup", checkpoint, args, args.encode_batch)]
        if args.save:
            load_tokenizer(str(checkpoint), args.shape, args.resolution).save_pretrained(args.save)
    machine, side = machine_info(), args.resolution // 16
    results = {"command": " ".join(["python", "benchmarks/published_size.py", *sys.argv[1:]]), "machine": machine,
               "device": args.device, "shape": args.shape,
               "config": {**config, "ch": args.ch, "resolution": args.resolution},
               "parameters": parameters, "rows": rows}
    lines = [
        f"# {title} at {args.resolution}x{args.resolution} ({args.device})", "",
        f"Command: `{results['command']}`", machine_line(machine), "",
        (("Random weights in the publisher's layout, converted with `image_tokenizer.convert(..., "
          f"format='{format_name}')`" if format_name else "Random weights in the module `convert --format cosmos` "
          "builds, saved as ours") + f": {parameters:,} parameters, {quantizer}, {side}x{side} tokens per image. Each row ran "
         "in a fresh process; peak memory is that process's peak (model included), best of the timed calls; the "
         "load average (1 minute) before and after each step shows whether the CPU was shared."), "",
        "| step | batch | images/s | peak memory (MB) | memory before the step (MB) | load average |",
        "|---|---|---|---|---|---|",
    ]
    names = {"encode": "`tok.encode(uint8 numpy batch)`", "decode": "`tok.decode(ids)`",
             "lookup": f"the quantizer's lookup alone (batch x {side * side} latents, {quantizer})"}
    for row in rows:
        load = " / ".join(f"{x:.1f}" for x in row.get("load_average_1min", []))
        lines.append(f"| {names[row['task']]} | {row['batch']} | {row['images_per_s']:.2f} | "
                     f"{row['peak_memory_mb']:.0f} | {row['memory_before_step_mb']:.0f} | {load} |")
    default_name = "published_size" if args.shape == "llamagen-vq16" else f"published_size_{args.shape}"
    write_results(args.output_dir, args.name or f"{default_name}_{args.device.split(':')[0]}", results, lines)


if __name__ == "__main__":
    main()
