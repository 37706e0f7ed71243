"""A seeded fuzzer for the public boundary: API calls, CLI invocations and tampered model folders.

Every case must either succeed or raise one of our ImageTokenizerError types (the CLI: exit 0 or 2, never a
traceback), within a time limit. Anything else is an unexpected exception type, which is a bug.

    python -m tests.fuzz --cases 10000 --seed 0        # the long run; its counts live in benchmarks/results/fuzz.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from image_tokenizer import ImageTokenizer, ImageTokenizerError
from image_tokenizer.cli import main
from tests.helpers import tiny_config

PIL_MODES = ["1", "L", "LA", "La", "P", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"]
NUMPY_DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64,
                np.bool_, np.complex64, object, "U3", "S2", "datetime64[D]"]
TORCH_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int64, torch.float16, torch.bfloat16, torch.float32,
                torch.float64, torch.bool, torch.complex64]


class Hang(Exception):
    """A case that ran past the time limit."""


def _alarm(signum, frame):
    raise Hang()


def random_shape(rng: random.Random, ndim: int) -> tuple[int, ...]:
    return tuple(rng.choice([0, 1, 2, 3, 4, 7, 8, 16, 17, 33]) for _ in range(ndim))


def random_array(rng: random.Random) -> np.ndarray:
    shape = random_shape(rng, rng.choice([0, 1, 2, 3, 4, 5]))
    dtype = rng.choice(NUMPY_DTYPES)
    values = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.choice([0.5, 100, 1e6]), size=shape)
    if rng.random() < 0.1 and values.size:
        values.flat[0] = rng.choice([np.nan, np.inf, -np.inf])
    with np.errstate(all="ignore"):
        try:
            return values.astype(dtype)
        except (ValueError, TypeError):
            return values


def random_tensor(rng: random.Random) -> torch.Tensor:
    array = np.random.default_rng(rng.randrange(2**32)).random(random_shape(rng, rng.choice([2, 3, 4])))
    tensor = torch.from_numpy(array * rng.choice([1.0, 255.0, -3.0])).to(rng.choice(TORCH_DTYPES))
    kind = rng.random()
    if kind < 0.1:
        return torch.empty(tensor.shape, device="meta")
    if kind < 0.2 and tensor.ndim >= 2 and tensor.dtype not in (torch.bool,):
        return tensor.to_sparse()
    if kind < 0.3 and tensor.ndim >= 2:
        return tensor.transpose(-1, -2)  # non-contiguous
    return tensor


def random_image(rng: random.Random) -> Image.Image:
    mode = rng.choice(PIL_MODES)
    size = (rng.choice([1, 2, 8, 15, 16, 17, 40]), rng.choice([1, 2, 8, 15, 16, 17, 40]))
    return Image.new(mode, size)


def random_file(rng: random.Random, folder: Path, index: int) -> str:
    path = folder / f"f{index}.{rng.choice(['png', 'jpg', 'gif', 'tiff', 'bmp', 'webp', 'txt', ''])}"
    choice = rng.random()
    if choice < 0.4:
        buffer = io.BytesIO()
        image = random_image(rng)
        (image.convert("LA") if image.mode == "La" else image).convert("RGB").save(buffer, format=rng.choice(["PNG", "JPEG", "GIF", "TIFF", "BMP"]))
        data = buffer.getvalue()
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data) + 1)]  # truncated
        elif rng.random() < 0.5 and len(data) > 20:
            position = rng.randrange(len(data))
            data = data[:position] + bytes([rng.randrange(256)]) + data[position + 1:]  # a flipped byte
        path.write_bytes(data)
    elif choice < 0.55:
        from tests.test_bad_input import declared_png

        path.write_bytes(declared_png(rng.choice([1, 20000, 50000, 100000]), rng.choice([1, 9500, 50000])))
    elif choice < 0.7:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
    elif choice < 0.8:
        path.mkdir(exist_ok=True)
    elif choice < 0.9:
        return str(folder / ("x" * rng.choice([10, 300])))  # missing, or a name too long for the filesystem
    else:
        path.write_text("")
    return str(path)


def random_images_input(rng: random.Random, folder: Path, index: int):
    kind = rng.randrange(6)
    if kind == 0:
        return random_array(rng)
    if kind == 1:
        return random_tensor(rng)
    if kind == 2:
        return random_image(rng)
    if kind == 3:
        return random_file(rng, folder, index)
    if kind == 4:
        return [random_images_input(rng, folder, index * 10 + i) for i in range(rng.randrange(4))]
    return rng.choice([None, 3, 2.5, "", b"bytes", {"a": 1}, (), object()])


def random_ids(rng: random.Random):
    kind = rng.randrange(5)
    if kind == 0:
        return random_array(rng)
    if kind == 1:
        return random_tensor(rng)
    if kind == 2:
        return [[rng.choice([0, 1, 63, 64, 65, -1, 10**12, 1.5, "a", None]) for _ in range(rng.choice([0, 8]))]
                for _ in range(rng.choice([0, 1, 8]))]
    if kind == 3:
        return np.random.default_rng(rng.randrange(2**32)).integers(-2, 70, size=random_shape(rng, rng.choice([1, 2, 3])))
    return rng.choice([None, [], "ids", 7, {"ids": [1]}])


def api_case(rng: random.Random, tok: ImageTokenizer, folder: Path, index: int) -> None:
    action = rng.randrange(6)
    if action == 0:
        tok.encode(random_images_input(rng, folder, index), native_size=rng.random() < 0.3)
    elif action == 1:
        tok(random_images_input(rng, folder, index), return_tensors=rng.choice([None, "pt", "np", "mlx", "tf", 3]),
            add_special_tokens=rng.random() < 0.5)
    elif action == 2:
        tok.decode(random_ids(rng), output_type=rng.choice(["pil", "np", "pt", "png"]))
    elif action == 3:
        tok.batch_decode(random_ids(rng))
    elif action == 4:
        tok.convert_ids_to_tokens(rng.choice([5, -1, 64, 10**9, 1.5, "3", [1, 2], [1, None]]))
    else:
        tok.convert_tokens_to_ids(rng.choice(["<img_00001>", "<boi>", "nope", 5, ["<eoi>", "x"], None]))


CLI_FLAGS = ["--batch-size", "--num", "--seed", "--device", "--shard-size", "--num-proc", "--top-k", "--scale",
             "--rows", "--samples", "--resolution", "--max-pixels", "--num-nodes", "--node-rank", "--columns"]
CLI_VALUES = ["0", "-1", "-5", "1", "2", "abc", "1e9", "", "cuda", "bogus", "cpu", "cuda:7", "99999999999"]


CURRENT_ARGV: list[str] = []


def cli_case(rng: random.Random, model_dir: Path, folder: Path, index: int) -> bool:
    command = rng.choice(["encode", "decode", "info", "evaluate", "pretokenize", "shapes", "generate", "complete",
                          "reconstruct", "convert", "pretokenize-merge", "bogus"])
    argv = [command]
    if command in ("encode", "reconstruct", "complete"):
        argv.append(random_file(rng, folder, index))
    if command in ("decode",):
        ids = folder / f"ids{index}.json"
        ids.write_text(rng.choice(['{"a": 1}', "[[1, 2]]", "[[99, 1], [1, 1]]", "not json", '{"images": [{}]}', "[]"]))
        argv.append(str(ids))
    if command in ("convert", "pretokenize-merge", "info"):
        argv.append(rng.choice([str(model_dir), str(folder), str(folder / "nothing"), "someone/not-cached"]))
    for _ in range(rng.randrange(3)):
        argv += [rng.choice(CLI_FLAGS), rng.choice(CLI_VALUES)]
    if command not in ("shapes", "info", "convert", "pretokenize-merge", "bogus"):
        argv += ["--model", str(model_dir)]  # the tiny model: the bundled ones are slow, and tested elsewhere
    argv += ["--output", str(folder / f"out{index}.png")] if rng.random() < 0.7 else []
    CURRENT_ARGV[:] = argv
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = err.getvalue()
    if code not in (0, 2) or "Traceback" in text or (code == 2 and len(text.strip().splitlines()) != 1):
        raise AssertionError(f"CLI {argv} exited {code}: {text[-300:]}")
    return code == 0


FOLDER_EDITS = [
    ("config.json", "ch", ["64", 1e9, None, True, -1, 16384]),
    ("config.json", "quantizer", [None, "x", [], {"codebook_size": 1.0}, {"l2_normalize": "false"}]),
    ("config.json", "preprocessing", [{"image_mean": [float("nan")] * 3}, {"image_std": [0, 0, 0]}, {"image_mean": "abc"}]),
    ("config.json", "resolution", [0, 17, "16", 2**40]),
    ("vocab.json", "token_format", ["{0}{1}", 123, "{}", "", "{:x}"]),
    ("vocab.json", "special_tokens", [["<boi>"], {"<boi>": "x"}, None]),
    ("vocab.json", "codebook_size", [63, -1, "64", 1e3]),
]


def folder_case(rng: random.Random, tok: ImageTokenizer, folder: Path, index: int) -> None:
    target = folder / f"model{index}"
    tok.save_pretrained(target)
    if rng.random() < 0.5:
        name, key, values = rng.choice(FOLDER_EDITS)
        data = json.loads((target / name).read_text())
        data[key] = rng.choice(values)
        (target / name).write_text(json.dumps(data))
    else:
        name = rng.choice(["model.safetensors", "codebook.safetensors", "config.json", "vocab.json"])
        data = bytearray((target / name).read_bytes())
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (target / name).write_bytes(bytes(data[: rng.randrange(len(data) + 1)] if rng.random() < 0.3 else data))
    loaded = ImageTokenizer.from_pretrained(target)
    loaded.decode(loaded.encode(np.zeros((16, 16, 3), np.uint8)))


def run(cases: int, seed: int, time_limit: int = 20) -> dict:
    """Run `cases` seeded cases; returns the counts by outcome and the unexpected failures."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    tok = ImageTokenizer(tiny_config())
    counts: Counter = Counter()
    unexpected: list[str] = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = folder / "model"
        tok.save_pretrained(model_dir)
        for index in range(cases):
            family = rng.choices(["api", "cli", "folder"], weights=[8, 1, 1])[0]
            signal.alarm(time_limit)
            try:
                if family == "api":
                    api_case(rng, tok, folder, index)
                elif family == "cli" and not cli_case(rng, model_dir, folder, index):
                    counts["cli: clean error (exit 2, one line)"] += 1
                    continue
                elif family == "folder":
                    folder_case(rng, tok, folder, index)
                counts[f"{family}: ok"] += 1
            except ImageTokenizerError:
                counts[f"{family}: clean error"] += 1
            except Hang:
                counts[f"{family}: hang"] += 1
                unexpected.append(f"case {index} ({family}): ran past {time_limit} s {CURRENT_ARGV if family == 'cli' else ''}")
            except Exception as error:  # noqa: BLE001  (counting every other type is the point)
                counts[f"{family}: unexpected"] += 1
                unexpected.append(f"case {index} ({family}): {type(error).__name__}: {str(error)[:200]}")
            finally:
                signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    return {"cases": cases, "seed": seed, "seconds": time.perf_counter() - start, "counts": dict(sorted(counts.items())),
            "unexpected": unexpected}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the counts as JSON here")
    args = parser.parse_args()
    result = run(args.cases, args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    sys.exit(1 if result["unexpected"] else 0)
