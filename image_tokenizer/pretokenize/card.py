"""A pre-tokenization output as a dataset in its own right: the card that points `load_dataset` at the token
files (and away from the bookkeeping beside them), and the upload of the finished folder to the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import HubError
from ..fileio import atomic_write_text

CARD_NAME = "README.md"
SHARD_FILES = "data/*.parquet"  # a streaming output's token files; the JSON bookkeeping lies outside them
NOT_UPLOADED = [".lock", "**/.lock", ".*.tmp", "**/.*.tmp"]  # locks and half-written files stay local


def write_dataset_card(folder: str | Path, info: dict[str, Any], data_files: str = SHARD_FILES) -> Path:
    """README.md whose YAML `configs` name the token files, so `datasets.load_dataset(folder, split="train")`
    reads the rows and nothing else (without it, the loader picks up the JSON bookkeeping)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(configs=[{"config_name": "default", "data_files": [{"split": "train", "path": data_files}]}])
    source = f" of `{info['source']}`" if info.get("source") else ""
    model = f" by the image tokenizer `{info['model']}`" if info.get("model") else ""
    text = (
        f"---\n{data.to_yaml()}\n---\n\n# Pre-tokenized images\n\nToken ids{source}{model}, written by image-tokenizer's "
        "`pretokenize`. Each row holds `input_ids` (row-major codebook ids), `grid_h`, `grid_w`, `source_index` "
        "(the input row) and the source's other columns. Load it with "
        "`datasets.load_dataset(PATH_OR_REPO, split=\"train\")`; `pretokenize_info.json` records how it was made.\n"
    )
    return atomic_write_text(Path(folder) / CARD_NAME, str(DatasetCard(text)))


def check_can_push(repo_id: str | None, token: str | bool | None = None) -> None:
    """Refuse a push before any work when it cannot happen (offline, Hub unreachable, no right to write the repo),
    rather than after hours of encoding. Creates the dataset repo when it does not exist yet, as the push would."""
    from huggingface_hub import HfApi, constants

    from ..hub import hub_errors

    if repo_id is None:
        return
    if constants.HF_HUB_OFFLINE:
        raise HubError(f"cannot push to {repo_id!r}: HF_HUB_OFFLINE=1 is set; unset it to reach the Hub, or drop the push")
    with hub_errors(repo_id):
        HfApi(token=token).create_repo(repo_id, repo_type="dataset", exist_ok=True)


def push_dataset_folder(folder: str | Path, repo_id: str, token: str | bool | None = None, private: bool | None = None) -> Any:
    """Upload a finished output folder as a Hub dataset repo (one commit); returns the CommitInfo."""
    from huggingface_hub import HfApi

    from ..hub import hub_errors

    api = HfApi(token=token)
    with hub_errors(repo_id):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                                 ignore_patterns=NOT_UPLOADED, commit_message="Upload pre-tokenized images")
