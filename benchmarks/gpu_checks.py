"""What `python benchmarks/gpu_queue.py check JOB --out DIR` does: a GPU job's results checked here, on the CPU,
before they are committed and the job is marked done. Each check returns the problems it found (none: checked).

Every job: each file it promises exists, each JSON parses and names the GPU it ran on. Then per job: the figures
are complete and plausible, the ids a fast path produced agree with the plain path, and where the job trained
weights, they load strictly here and score on this CPU what the GPU said they score.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PSNR_TOLERANCE_DB = 0.05  # CPU and GPU may round a near-tie to another code; a few such ids move PSNR by far less


def check_job(job, out: Path, smoke: bool = False) -> list[str]:
    """All problems with the results of `job` that a device call left under `out` (repo/ and extra/)."""
    problems = [f"{path}: missing" for path in job.writes if not (out / "repo" / path).exists()]
    for path in job.writes:
        file = out / "repo" / path
        if file.suffix == ".json" and file.exists():
            problems += _check_json(file, smoke)
    if problems:
        return problems
    return CHECKS.get(job.name, lambda out, smoke: [])(out, smoke)


def _check_json(file: Path, smoke: bool) -> list[str]:
    try:
        data = json.loads(file.read_text())
    except ValueError as error:
        return [f"{file.name}: not JSON ({error})"]
    machine = data.get("machine", {}) if isinstance(data, dict) else {}
    if not smoke and not machine.get("cuda"):
        return [f"{file.name}: records no GPU (machine.cuda is {machine.get('cuda')!r}): not a GPU result"]
    return []


def _results(out: Path, name: str) -> dict:
    return json.loads((out / "repo" / "benchmarks" / "results" / f"{name}.json").read_text())


def _rates(name: str, rates: dict, floor: float = 0.0) -> list[str]:
    return [f"{name}: {key} is {value}" for key, value in rates.items() if not value > floor]


def _agreement(name: str, agreement: dict, least: float) -> list[str]:
    return [f"{name}: ids agree {value:.5f} for {key} (< {least})" for key, value in agreement.items()
            if value < least and "bf16" not in key]  # bf16 changes ids by design; its share is reported, not judged


def check_encode_64(out: Path, smoke: bool) -> list[str]:
    problems = []
    for name in ("throughput_cuda", "throughput_cuda_compiled"):
        data = _results(out, name)
        problems += _rates(name, data["images_per_s"]) + _agreement(name, data["id_agreement"], 0.99)
    return problems + ([] if _results(out, "throughput_cuda").get("encode_profile") else ["throughput_cuda: no encode profile"])


def check_encode_256(out: Path, smoke: bool) -> list[str]:
    sized = _results(out, "published_size_cuda")
    problems = [f"published_size_cuda: {row['task']} has no rate" for row in sized["rows"] if not row["images_per_s"] > 0]
    data = _results(out, "throughput_cuda_256")
    return problems + _rates("throughput_cuda_256", data["images_per_s"]) + _agreement(
        "throughput_cuda_256", data["id_agreement"], 0.99)


def check_pretokenize(out: Path, smoke: bool) -> list[str]:
    problems = []
    for name in ("pretokenize_cuda", "pretokenize_cuda_noworkers"):
        data = _results(out, name)
        problems += _rates(name, {key: data[key] for key in ("naive_images_per_s", "ours_images_per_s")})
        if data["token_agreement"] < 0.99:
            problems.append(f"{name}: token agreement {data['token_agreement']:.5f} < 0.99")
        if not data.get("ours_profile"):
            problems.append(f"{name}: no profile")
    return problems


def check_train(out: Path, smoke: bool) -> list[str]:
    problems = []
    for name in ("train_throughput_cuda", "train_throughput_cuda_compiled"):
        problems += _rates(name, {variant: v["images_per_s"] for variant, v in _results(out, name)["variants"].items()})
    return problems


def check_claim(out: Path, smoke: bool) -> list[str]:
    """All four systems scored; their weights, re-scored on this CPU, give the GPU's PSNR."""
    from image_tokenizer import ImageTokenizer
    from image_tokenizer.data.shapes import HELDOUT_SEED, generate_arrays
    from image_tokenizer.evaluation import reconstruction_metrics
    from training.baselines.train_baseline import load_baseline, reconstruct

    data = _results(out, "seed_systems_gpu")
    problems = [f"seed_systems_gpu: {name} not scored" for name in ("AE", "VAE", "VQ-VAE", "VQGAN")
                if name not in data["systems"]]
    if problems:
        return problems
    images, holes = generate_arrays(data["systems"]["AE"]["num_images"], seed=HELDOUT_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(out / "extra" / "claim" / "models.tgz") as archive:
            archive.extractall(tmp, filter="data")
        runs = next(Path(tmp).rglob("ae")).parent
        for name, folder in (("AE", "ae"), ("VAE", "vae")):
            recon = reconstruct(load_baseline(runs / folder)[0], images)
            problems += _same_psnr(name, reconstruction_metrics(images, recon, holes), data["systems"][name])
        for name, folder in (("VQ-VAE", "vqvae"), ("VQGAN", "vqgan")):
            tokenizer = ImageTokenizer.from_pretrained(runs / folder / "final")
            recon = tokenizer.decode(tokenizer.encode(list(images)), output_type="np")
            problems += _same_psnr(name, reconstruction_metrics(images, recon, holes), data["systems"][name])
    return problems


def _same_psnr(name: str, here: dict, there: dict) -> list[str]:
    gap = abs(here["psnr_db"] - there["psnr_db"])
    print(f"{name}: PSNR {here['psnr_db']:.3f} dB here, {there['psnr_db']:.3f} on the GPU")
    return [f"{name}: PSNR {here['psnr_db']:.3f} dB here, {there['psnr_db']:.3f} on the GPU"] if gap > PSNR_TOLERANCE_DB else []


def _joined_parts(folder: Path, name: str, target: Path) -> Path:
    parts = sorted(folder.glob(f"{name}.part-*"))
    with open(target, "wb") as joined:
        joined.writelines(part.read_bytes() for part in parts)
    return target


def check_prior(out: Path, smoke: bool) -> list[str]:
    """The run finished and was measured; its bfloat16 weights load strictly here as the prior it saved."""
    from image_tokenizer import ImagePrior

    folder = out / "repo" / "benchmarks" / "results" / "gpu_prior_segment4"
    problems = [f"gpu_prior_segment4: {name} missing" for name in ("final-bf16/config.json", "results/generation_quality.json")
                if not (folder / name).exists()]
    parts = out / "extra" / "prior-more"
    if problems or not list(parts.glob("final-bf16.safetensors.part-*")):
        return problems or ["prior-more: no weight parts"]
    with tempfile.TemporaryDirectory() as tmp:
        final = Path(tmp) / "final-bf16"
        shutil.copytree(folder / "final-bf16", final)
        _joined_parts(parts, "final-bf16.safetensors", final / "model.safetensors")
        prior = ImagePrior.from_pretrained(final)
        print(f"prior-more: {sum(p.numel() for p in prior.model.parameters()):,} parameters load strictly; the bundle "
              "decision needs the CPU re-measure: python benchmarks/generation_quality.py --prior DIR --num 1000 "
              "(about 30 minutes here), against the bundled prior's 26.6")
    return []


def check_recipe(out: Path, smoke: bool) -> list[str]:
    """The one run finished; its weights load strictly here and score its own evaluation's PSNR on this CPU."""
    from image_tokenizer import ImageTokenizer
    from image_tokenizer.data.shapes import generate_arrays
    from image_tokenizer.evaluation import evaluate_tokenizer

    reported = json.loads((out / "repo" / "benchmarks" / "results" / "recipe_one_run" / "eval.json").read_text())
    extra = out / "extra" / "recipe"
    with tempfile.TemporaryDirectory() as tmp:
        final = Path(tmp) / "final"
        shutil.copytree(extra / "final", final)
        _joined_parts(extra, "model.safetensors", final / "model.safetensors")
        tokenizer = ImageTokenizer.from_pretrained(final)
        train = json.loads((ROOT / "training" / "configs" / "shapes64.json").read_text())
        images, holes = generate_arrays(int(reported["num_images"]), seed=train["eval_seed"])
        here = evaluate_tokenizer(tokenizer, images, holes)
    return _same_psnr("recipe", here, reported)


def check_emoji(out: Path, smoke: bool) -> list[str]:
    """emoji-64 scores on this CPU's rendering of the held-out emoji what it scored on the GPU; the prior loads
    strictly with its group classes. Bundling needs more: beating emoji-64-small (benchmarks/emoji_eval.py)."""
    import numpy as np

    from image_tokenizer import ImagePrior, ImageTokenizer
    from image_tokenizer.data.emoji import emoji_dataset
    from image_tokenizer.evaluation import evaluate_tokenizer

    reported = _results(out, "emoji_gpu/eval")["models"]
    extra = out / "extra" / "emoji"
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("tokenizer", "prior"):
            shutil.copytree(extra / model, Path(tmp) / model)
            _joined_parts(Path(tmp) / model, "model.safetensors", Path(tmp) / model / "model.safetensors")
            for part in (Path(tmp) / model).glob("model.safetensors.part-*"):
                part.unlink()
        tokenizer = ImageTokenizer.from_pretrained(Path(tmp) / "tokenizer")
        held_out = emoji_dataset("test", tokenizer.config.resolution, limit=4 if smoke else None)
        images = np.stack([np.asarray(image) for image in held_out["image"]])
        here = evaluate_tokenizer(tokenizer, images)
        prior = ImagePrior.from_pretrained(Path(tmp) / "prior", tokenizer=tokenizer)
        print(f"emoji: prior with {prior.layout.num_classes} group classes loads strictly")
    return _same_psnr("emoji-64", here, next(iter(reported.values())))


def check_prior_default_cost(out: Path, smoke: bool) -> list[str]:
    """train_prior.py's default run on the GPU: steps were run, and every time is a positive, finite figure."""
    figures = _results(out, "prior_default_cost_cuda")
    problems = _rates("prior_default_cost_cuda", {k: figures[k] for k in ("steps", "s_per_step", "wall_s", "train_runtime_s")})
    if not smoke and figures["settings"]["max_steps"] != 5000:
        problems.append(f"prior_default_cost_cuda: max_steps {figures['settings']['max_steps']}, not the default 5,000")
    return problems


def check_ray_pretokenize(out: Path, smoke: bool) -> list[str]:
    """The Ray engine ran beside the local engine, on one GPU actor, and gave the local engine's ids."""
    figures = _results(out, "pretokenize_ray_cuda")
    engines = figures["ray"]["engines"]
    problems = _rates("pretokenize_ray_cuda", {name: row["images_per_s"] for name, row in engines.items()})
    problems += _agreement("pretokenize_ray_cuda", {name: row["id_agreement_with_local"] for name, row in engines.items()}, 0.99)
    if "local" not in engines or len(engines) < 2:
        problems.append(f"pretokenize_ray_cuda: engines {sorted(engines)}, not the local one and a Ray one")
    if not smoke and figures["settings"]["gpus_per_actor"] != 1:
        problems.append(f"pretokenize_ray_cuda: gpus_per_actor {figures['settings']['gpus_per_actor']}, not 1")
    return problems


def check_distil_1d(out: Path, smoke: bool) -> list[str]:
    """Every N trained both stages and was scored: finite PSNR, SSIM in [0, 1], usage in (0, 1], the proxy's row."""
    import math

    figures = _results(out, "distil_1d_cuda")
    wanted = [16] if smoke else [16, 32, 64]
    problems = [] if [row["tokens"] for row in figures["rows"]] == wanted else \
        [f"distil_1d_cuda: rows for N = {[row['tokens'] for row in figures['rows']]}, not {wanted}"]
    for name, scores in [("proxy", figures["proxy"])] + [(f"N={row['tokens']} stage {stage}", row[f"after_stage{stage}"])
                                                          for row in figures["rows"] for stage in (1, 2)]:
        if not (math.isfinite(scores["psnr_db"]) and 0 <= scores["ssim"] <= 1 and 0 < scores["codebook_usage"] <= 1):
            problems.append(f"distil_1d_cuda: {name} scores {scores}")
    return problems


CHECKS: dict[str, Callable[[Path, bool], list[str]]] = {
    "speed-encode-64": check_encode_64,
    "speed-encode-256": check_encode_256,
    "speed-pretokenize": check_pretokenize,
    "speed-train": check_train,
    "claim": check_claim,
    "prior-more": check_prior,
    "recipe": check_recipe,
    "emoji": check_emoji,
    "prior-default-cost": check_prior_default_cost,
    "ray-pretokenize": check_ray_pretokenize,
    "distil-1d": check_distil_1d,
}
