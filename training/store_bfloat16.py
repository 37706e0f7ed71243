"""Copy a saved prior with its weights rounded to bfloat16, the form a bundled prior is stored in (half the bytes;
ImagePrior.from_pretrained runs them in float32 again).

    python training/store_bfloat16.py SOURCE_DIR TARGET_DIR
"""

from __future__ import annotations

import shutil
import sys

import torch

from image_tokenizer import ImagePrior


def store_bfloat16(source: str, target: str) -> None:
    """TARGET_DIR gets SOURCE_DIR's files (card, layout, generation config) and bfloat16 weights."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    prior = ImagePrior.from_pretrained(target)
    prior.model.to(torch.bfloat16)
    prior.save_pretrained(target, model_name="shapes-64-prior")


if __name__ == "__main__":
    store_bfloat16(*sys.argv[1:3])
