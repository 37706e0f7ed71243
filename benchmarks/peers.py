"""Side by side on the CPU: each peer's own code and ours, on the same random weights.

    python benchmarks/peers.py [--batches 8] [--repeats 5] [--peers diffusers,janus,chameleon,taming]

Each peer is built from its own package at one setup (256x256 images, ch 64, K 16,384, 16x16 ids), given random
weights, saved in its native format and converted with our CLI (`image-tokenizer convert`). Both encode the same
pixels; the share of equal ids and the largest pixel difference of both decoders on the peer's ids are recorded.
Then encode (normalised pixels -> ids) and decode (ids -> pixels) of both are timed interleaved in one process, a
warm-up then `--repeats` rounds, medians; and the peak memory of one call of each. Ours runs through the public API
(`encode_pixels`, `decode(..., output_type="pt")`), the peers through their own model calls.

taming-transformers installs with `pip install --no-deps taming-transformers` (its package pulls in Lightning and
torchvision); a peer that cannot be built is listed with the reason. Writes benchmarks/results/peers_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, machine_line, write_results
from _peers import BUILDERS, NOT_MEASURED, Peer, PeerUnavailable
from _setup import interleaved_medians, peak_memory_mib, random_pixels

from image_tokenizer import ImageTokenizer
from image_tokenizer.cli import main as cli


def convert_with_cli(peer: Peer, output: Path) -> ImageTokenizer:
    code = cli(["convert", str(peer.source), "--output", str(output)])
    if code != 0:
        raise RuntimeError(f"image-tokenizer convert {peer.source} exited with {code}")
    return ImageTokenizer.from_pretrained(output)


@torch.inference_mode()
def compare(peer: Peer, ours: ImageTokenizer, batch: int, repeats: int) -> dict:
    """Ids and pixels of both, then interleaved timings and peak memory of encode and decode."""
    pixels = random_pixels(batch)
    peer_ids = peer.encode(pixels)
    calls = {"ours encode": lambda: ours.encode_pixels(pixels), "peer encode": lambda: peer.encode(pixels)}
    result: dict = {"batch": batch, "ids_equal_share": float((ours.encode_pixels(pixels) == peer_ids).float().mean())}
    if peer.decode is not None:
        difference = (ours.model.decode_ids(peer_ids) - peer.decode(peer_ids)).abs().max().item()
        result["decoded_pixels_max_abs_difference"] = difference
        calls["ours decode"] = lambda: ours.decode(peer_ids, output_type="pt")
        calls["peer decode"] = lambda: peer.decode(peer_ids)
    load_before = os.getloadavg()[0]
    result["timings"] = interleaved_medians(calls, repeats)
    result["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    result["peak_memory_mib"] = {name: peak_memory_mib(fn) for name, fn in calls.items()}
    for step in ("encode", "decode"):
        if f"ours {step}" in calls:
            timings = result["timings"]
            result[f"{step}_speedup_ours_over_peer"] = timings[f"peer {step}"]["median_s"] / timings[f"ours {step}"]["median_s"]
    return result


def measure(args: argparse.Namespace) -> dict:
    rows, unavailable = {}, dict(NOT_MEASURED)
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.peers:
            try:
                peer = BUILDERS[key](Path(tmp) / key)
            except PeerUnavailable as reason:
                unavailable[key] = str(reason)
                continue
            ours = convert_with_cli(peer, Path(tmp) / f"{key}-converted")
            rows[peer.name] = [compare(peer, ours, batch, args.repeats) for batch in args.batches]
            print(peer.name, rows[peer.name], flush=True)
    return {
        "command": " ".join(["python", "benchmarks/peers.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "setup": "256x256 images, ch 64, ch_mult (1, 1, 2, 2, 4), 2 ResNet blocks per level, K 16,384, d 8, 16x16 ids, "
                 "random weights (benchmarks/_setup.py)",
        "repeats": args.repeats,
        "peers": rows,
        "not_measured": unavailable,
    }


def _ratio(result: dict, step: str) -> str:
    speedup = result.get(f"{step}_speedup_ours_over_peer")
    return "no decoder" if speedup is None else f"{speedup:.2f}x"


def _rate(result: dict, step: str) -> str:
    timings = result["timings"]
    if f"ours {step}" not in timings:
        return "-"
    ours, peer = (result["batch"] / timings[f"{who} {step}"]["median_s"] for who in ("ours", "peer"))
    return f"{ours:.2f} / {peer:.2f}"


def _memory(result: dict, step: str) -> str:
    peaks = result["peak_memory_mib"]
    return "-" if f"ours {step}" not in peaks else f"{peaks[f'ours {step}']:,.0f} / {peaks[f'peer {step}']:,.0f}"


def report(results: dict) -> list[str]:
    lines = [
        "# Ours against each peer's own code on the CPU", "",
        f"Command: `{results['command']}`", "", machine_line(results["machine"]), "",
        (f"Setup: {results['setup']}. Each pair is timed interleaved in one process, {results['repeats']} repeats after "
        "a warm-up, medians; speed-up = peer's time / ours. Memory: how far the process's resident memory rose during "
        "one call (MiB)."), "",
        ("| peer | batch | ids equal | encode, ours / peer | decode, ours / peer | encode images/s, ours / peer "
        "| decode images/s, ours / peer | encode peak MiB, ours / peer | decode peak MiB, ours / peer | load (1 min) |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, results_of_peer in results["peers"].items():
        for r in results_of_peer:
            load = r["load_average_1min"]
            lines.append(f"| {name} | {r['batch']} | {r['ids_equal_share']:.2%} | {_ratio(r, 'encode')} | {_ratio(r, 'decode')} "
                         f"| {_rate(r, 'encode')} | {_rate(r, 'decode')} | {_memory(r, 'encode')} | {_memory(r, 'decode')} "
                         f"| {load['before']:.1f} -> {load['after']:.1f} |")
    lines += ["", "Pixels decoded from the peer's ids differ from the peer's by at most: " + "; ".join(
        f"{name} {r[0]['decoded_pixels_max_abs_difference']:.1e}" for name, r in results["peers"].items()
        if "decoded_pixels_max_abs_difference" in r[0]) + "."]
    lines += ["", "Not measured:", ""] + [f"- {name}: {reason}." for name, reason in results["not_measured"].items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="8", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers", default=",".join(BUILDERS), help=f"comma-separated, of {', '.join(BUILDERS)}")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.peers = args.peers.split(",")
    results = measure(args)
    write_results(args.output_dir, "peers_cpu", results, report(results))


if __name__ == "__main__":
    main()
