"""Sampling speed of the prior: transformers generate with the KV cache, the same without it, and a plain loop
that recomputes the whole prefix at every step, in one run on one machine.

    python benchmarks/sampling.py [--prior shapes-64-prior] [--batch 16] [--device cpu]

Writes benchmarks/results/sampling_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results

from image_tokenizer import ImagePrior
from image_tokenizer.prior import SamplingOptions


@torch.inference_mode()
def transformers_generate(prior: ImagePrior, batch: int, use_cache: bool) -> torch.Tensor:
    layout = prior.layout
    prompt = layout.prefix(torch.zeros(batch, dtype=torch.long) if layout.conditional else None, batch).to(prior.device)
    return prior.model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0,
        max_new_tokens=layout.num_image_tokens, min_new_tokens=layout.num_image_tokens,
        suppress_tokens=layout.non_image_token_ids, use_cache=use_cache,
        pad_token_id=layout.pad_token_id, eos_token_id=layout.eoi_token_id,
    )


@torch.inference_mode()
def plain_loop(prior: ImagePrior, batch: int) -> torch.Tensor:
    """What a from-scratch sampler does: the whole sequence through the model for every new token."""
    layout = prior.layout
    warpers = SamplingOptions().warpers(layout)
    sequence = layout.prefix(torch.zeros(batch, dtype=torch.long) if layout.conditional else None, batch).to(prior.device)
    for _ in range(layout.num_image_tokens):
        scores = warpers(sequence, prior.model(sequence, use_cache=False).logits[:, -1].float())
        sequence = torch.cat([sequence, torch.multinomial(torch.softmax(scores, -1), 1)], dim=1)
    return sequence


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="shapes-64-prior")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    prior = ImagePrior.from_pretrained(args.prior, device=args.device)
    device = prior.device
    tokens = args.batch * prior.layout.num_image_tokens
    torch.manual_seed(0)
    transformers_generate(prior, 2, True)  # warm-up
    runs = {
        "kv_cache": lambda: transformers_generate(prior, args.batch, True),
        "no_cache": lambda: transformers_generate(prior, args.batch, False),
        "plain_loop": lambda: plain_loop(prior, args.batch),
    }
    seconds = {name: min(timed(fn, device) for _ in range(args.repeats)) for name, fn in runs.items()}
    rates = {name: tokens / s for name, s in seconds.items()}
    results = {
        "command": " ".join(["python", "benchmarks/sampling.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "prior": args.prior,
        "parameters": sum(p.numel() for p in prior.model.parameters()),
        "batch": args.batch,
        "tokens_per_image": prior.layout.num_image_tokens,
        "seconds": seconds,
        "tokens_per_s": rates,
        "kv_cache_speedup_over_no_cache": rates["kv_cache"] / rates["no_cache"],
        "kv_cache_speedup_over_plain_loop": rates["kv_cache"] / rates["plain_loop"],
    }
    names = {"kv_cache": "transformers generate, KV cache", "no_cache": "transformers generate, use_cache=False",
             "plain_loop": "plain loop, whole prefix recomputed per token"}
    lines = [
        f"# Prior sampling speed ({device.type}, {args.prior}, batch {args.batch} x {prior.layout.num_image_tokens} tokens)",
        "",
        f"Command: `{results['command']}`  ",
        machine_line(results["machine"]),
        "",
        "| sampler | tokens/s | images/s | seconds |",
        "|---|---|---|---|",
        *[f"| {names[n]} | {rates[n]:.0f} | {args.batch / seconds[n]:.2f} | {seconds[n]:.2f} |" for n in runs],
        "",
        f"KV cache: **{results['kv_cache_speedup_over_no_cache']:.1f}x** the same model without it, "
        f"**{results['kv_cache_speedup_over_plain_loop']:.1f}x** the plain loop (best of {args.repeats} runs each).",
    ]
    write_results(args.output_dir, f"sampling_{device.type}", results, lines)


if __name__ == "__main__":
    main()
