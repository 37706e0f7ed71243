"""Run by tests/test_distributed.py: accelerate's debug_launcher starts 2 CPU processes (gloo); each runs a
few training steps, then writes its weights, codebook and EMA statistics so the test can compare them."""

import sys
from pathlib import Path

import torch.distributed as dist
from accelerate import debug_launcher
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.train_tokenizer import TrainConfig, train


def run(out_dir: str) -> None:
    out = Path(out_dir)
    config = TrainConfig(
        output_dir=str(out / "run"),
        model={
            "resolution": 64, "ch": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 8, "norm_groups": 4,
            "use_mid_attention": False,
            "quantizer": {"codebook_size": 32, "codebook_dim": 4, "use_ema": True, "dead_code_threshold": 0.05},
        },
        loss={"disc_start": 1, "gan_start": 2},
        num_train_images=64, eval_images=0, steps=4, batch_size=8, warmup_steps=1, disc_ch=8,
        log_every=2, image_every=0, checkpoint_every=0, progress=False, kmeans_batches=1, kmeans_iters=2,
    )
    summary = train(config)
    rank = dist.get_rank()
    state = {k: v.contiguous() for k, v in summary["model"].state_dict().items()}
    save_file(state, str(out / f"rank{rank}.safetensors"), metadata={"world_size": str(dist.get_world_size())})


if __name__ == "__main__":
    debug_launcher(run, args=(sys.argv[1],), num_processes=2)
