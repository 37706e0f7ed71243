"""Render the emoji source once into datasets folders, for a machine without the emoji packages (the GPU).

    python benchmarks/emoji_data.py OUT [--resolution 64] [--limit N]
    python benchmarks/emoji_data.py --examples


Writes OUT/train and OUT/test (`datasets.save_to_disk`, the columns of image_tokenizer/data/emoji.py), which
training, evaluation and pre-tokenization read as a saved dataset. `bash benchmarks/gpu_wheels.sh` makes
.whl/emoji64 with it (about 28 MB), so the device call's carry brings it along. --limit keeps the first N emoji
of each split (toy size). --examples rewrites the dozen held-out emoji bundled for the demo
(image_tokenizer/data/emoji_heldout.png and .json).
"""

from __future__ import annotations

import argparse

from image_tokenizer.data.emoji import SPLITS, emoji_dataset
from image_tokenizer.data.emoji_examples import EXAMPLES_PNG, write_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--examples", action="store_true", help="write the bundled held-out examples instead")
    args = parser.parse_args()
    if args.examples:
        write_examples(args.resolution)
        print(f"wrote {EXAMPLES_PNG} and its .json")
        return
    if args.output is None:
        parser.error("give OUT, or --examples")
    for split in SPLITS:
        dataset = emoji_dataset(split, args.resolution, limit=args.limit)
        dataset.save_to_disk(f"{args.output}/{split}")
        print(f"{args.output}/{split}: {len(dataset)} images")


if __name__ == "__main__":
    main()
