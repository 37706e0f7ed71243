"""Copy a saved prior with its weights rounded to bfloat16, the form a bundled prior is stored in (half the bytes;
ImagePrior.from_pretrained runs them in float32 again).

    python training/store_bfloat16.py SOURCE_DIR TARGET_DIR [MODEL_NAME]   # the card's name, default shapes-64-prior
"""

from __future__ import annotations

import shutil
import sys

import torch

from image_tokenizer import ImagePrior


def store_bfloat16(source: str, target: str, model_name: str = "shapes-64-prior") -> None:
    """TARGET_DIR gets SOURCE_DIR's files (layout, generation config, a card titled model_name) and bfloat16 weights."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    prior = ImagePrior.from_pretrained(target)
    prior.model.to(torch.bfloat16)
    prior.save_pretrained(target, model_name=model_name)


if __name__ == "__main__":
    store_bfloat16(*sys.argv[1:4])
