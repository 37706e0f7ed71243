"""Turn a training checkpoint into a saved ImageTokenizer, evaluated on held-out shapes.

    python training/export_checkpoint.py runs/shapes-64/checkpoints/step-0004000 --output image_tokenizer/pretrained/shapes-64

Useful when a run is stopped early (a time budget, a preempted job) and its last checkpoint is the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from image_tokenizer.fileio import check_state_dict, load_tensors
from image_tokenizer.modeling import VQModel
from training.train_tokenizer import TrainConfig, evaluated_card


def export(checkpoint: Path, output: Path, eval_images: int, eval_seed: int, name: str, note: str) -> dict:
    state = json.loads((checkpoint / "state.json").read_text())
    config = TrainConfig(**{**state["config"], "eval_images": eval_images, "eval_seed": eval_seed})
    tok_config = ImageTokenizerConfig(**config.model)
    model = VQModel(tok_config)
    weights = load_tensors(checkpoint / "model.safetensors")
    check_state_dict(checkpoint / "model.safetensors", weights, model.state_dict())
    model.load_state_dict(weights, strict=True)
    tokenizer = ImageTokenizer(tok_config, model.eval())
    steps = f"{state['step']} of {config.steps} planned (exported from {checkpoint.name})"
    extra = {"config": json.dumps(config.model), **({"note": note} if note else {})}
    metrics = evaluated_card(tokenizer, config, steps, extra)
    tokenizer.save_pretrained(output, model_name=name)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--name", default="shapes-64")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--eval-seed", type=int, default=1)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    metrics = export(args.checkpoint, args.output, args.eval_images, args.eval_seed, args.name, args.note)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
