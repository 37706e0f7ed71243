"""A pre-tokenization output as a dataset in its own right: the card that points `load_dataset` at the token
files (and away from the bookkeeping beside them), and the upload of the finished folder to the Hub.

`datasets` keys its cache of a local folder by the folder's name and the text of the card's `data_files` alone
(not the folder's path, nor the files' times), so parquet token files are named by their content
(`token_file_name`) and the card lists them: another run, in a folder of the same name or after a rewrite, names
other files and is never served the rows `datasets` prepared for an earlier one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import HubError
from ..fileio import atomic_write_text

CARD_NAME = "README.md"
ARROW_FILES = "data-*.arrow"  # save_to_disk's files: load_from_disk reads the folder, load_dataset only a Hub copy
NOT_UPLOADED = [".lock", "**/.lock", ".*.tmp", "**/.*.tmp"]  # locks and half-written files stay local


def token_file_name(stem: str, sha256: str) -> str:
    """`shard-00000` and the file's sha256 -> `shard-00000-<its first 16 hex digits>.parquet`: identical rows get
    identical names (and share `datasets`' cache), any other rows get other names."""
    return f"{stem}-{sha256[:16]}.parquet"


def write_dataset_card(folder: str | Path, info: dict[str, Any], data_files: dict[str, str | list[str]]) -> Path:
    """README.md whose YAML `configs` name each split's token files ({split: paths relative to the folder}), so
    `datasets.load_dataset(folder)` gives those splits with this run's rows and nothing else (without it, the
    loader picks up the JSON bookkeeping). An arrow output (ARROW_FILES) loads locally with `load_from_disk`."""
    from huggingface_hub import DatasetCard, DatasetCardData

    files = [{"split": split, "path": paths} for split, paths in data_files.items()]
    layout = info.get("layout") or {"kind": "grid", "order": "row-major"}
    # The layout in the front matter too, so a pipeline reading only the card (or the Hub's API) knows the rows.
    data = DatasetCardData(configs=[{"config_name": "default", "data_files": files}],
                           **({"image_token_layout": layout} if "layout" in info else {}))
    source = f" of `{info['source']}`" if info.get("source") else ""
    model = f" by the image tokenizer `{info['model']}`" if info.get("model") else ""
    names = list(data_files)
    one = f"split=\"{names[0]}\"" if len(names) == 1 else ""
    loader = f"`datasets.load_dataset(PATH_OR_REPO{', ' + one if one else ''})`"
    if all(str(paths).endswith(ARROW_FILES) for paths in data_files.values()):
        loader = f"`datasets.load_from_disk(PATH)`, or {loader} once on the Hub"
    splits = f"one split, `{names[0]}`" if len(names) == 1 else "the splits " + ", ".join(f"`{n}`" for n in names)
    text = (
        f"---\n{data.to_yaml()}\n---\n\n# Pre-tokenized images\n\nToken ids{source}{model}, written by image-tokenizer's "
        f"`pretokenize`, in {splits}. Each row holds `input_ids` ({ids_text(layout)}), `grid_h`, `grid_w` (the finest "
        "token grid), `source_index` (the input row of its split) and the source's other columns. Load it with "
        f"{loader}; `pretokenize_info.json` records how it was made.\n"
    )
    return atomic_write_text(Path(folder) / CARD_NAME, str(DatasetCard(text)))


def ids_text(layout: dict[str, Any]) -> str:
    """What a row's input_ids are, from the layout pretokenize_info.json records (layouts.IdLayout.to_dict)."""
    kind, order = layout.get("kind"), layout.get("order", "")
    if kind == "multiscale":
        return f"one image's {layout.get('ids_per_image')} codebook ids, scales {layout.get('scales')}: {order}"
    if kind == "residual":
        return f"codebook ids of [h, w, depth {layout.get('depth')}] flattened: {order}"
    return "row-major codebook ids"


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
