"""Where a saved model comes from and goes to: bundled name, local directory, or Hugging Face Hub repo."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .errors import CheckpointError, HubError
from .safe_paths import files_inside

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    *,
    allow_patterns: list[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """Return a local directory for a saved model folder, a bundled name, another local directory, or a Hub repo
    id (in that order: a folder you saved under a bundled model's name is yours, not the bundled one). Each file
    of `allow_patterns` that it holds must lie inside it, symlinks resolved (safe_paths.inside)."""
    directory = _locate_pretrained(name_or_path, allow_patterns=allow_patterns, revision=revision, cache_dir=cache_dir,
                                   token=token, local_files_only=local_files_only)
    files_inside(directory, [p for p in allow_patterns if not any(c in p for c in "*?[")], error=CheckpointError)
    return directory


def _locate_pretrained(name_or_path: str | os.PathLike, *, allow_patterns: list[str], **hub_kwargs: Any) -> Path:
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir() and (local / "config.json").is_file():
        return local
    if name in bundled_models():
        return PRETRAINED_DIR / name
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{name} is a file; from_pretrained needs a directory, a bundled name or a Hub repo id")
    return download_snapshot(
        name,
        allow_patterns=allow_patterns,
        **hub_kwargs,
        not_found_hint=f"is not a bundled model ({', '.join(bundled_models()) or 'none installed'}), an existing directory,",
    )


def download_snapshot(
    repo_id: str,
    *,
    allow_patterns: list[str],
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    not_found_hint: str = "is not an existing file or directory,",
) -> Path:
    """A Hub repo's files (through the cache; offline when HF_HUB_OFFLINE=1), with errors in our own types."""
    try:
        path = snapshot_download(
            repo_id=repo_id,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=allow_patterns,
            library_name="image-tokenizer",
        )
    except HFValidationError:
        raise CheckpointError(f"{repo_id!r} {not_found_hint} or a valid Hub repo id") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        from huggingface_hub import constants

        if local_files_only or constants.HF_HUB_OFFLINE:
            raise CheckpointError(
                f"{repo_id!r} {not_found_hint.rstrip(',')} and is not in the Hugging Face cache "
                "while offline (HF_HUB_OFFLINE=1 or local_files_only=True); download it once while online"
            ) from None
        raise CheckpointError(
            f"{repo_id!r} {not_found_hint.rstrip(',')}, the Hugging Face Hub could not be reached, and it is not in "
            "the cache; check the network (or the name)"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} not found (or private without a token)") from None
    except EntryNotFoundError as error:
        raise CheckpointError(f"Hub repo {repo_id!r}: {error}") from None
    return Path(path)


def push_folder_to_hub(
    write: Callable[[Path], object],
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
):
    """Write a model with `write(tmp_dir)` and upload every file as one commit; returns the CommitInfo."""
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp, hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        write(Path(tmp))
        operations = [
            CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path))
            for path in sorted(Path(tmp).iterdir())
            if path.is_file()
        ]
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )


@contextmanager
def hub_errors(repo_id: str) -> Iterator[None]:
    """Offline mode, network failures and refused requests during a push, as one HubError that says which."""
    try:
        yield
    except OfflineModeIsEnabled:
        raise HubError(f"cannot push to {repo_id!r}: HF_HUB_OFFLINE=1 is set; unset it to reach the Hub") from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        hint = {401: "not logged in (hf auth login) or an invalid token", 403: "this token may not write to it",
                404: "the repo or revision does not exist"}.get(status, "the Hub refused the request")
        raise HubError(f"cannot push to {repo_id!r}: {hint} (HTTP {status})") from None
    except Exception as error:
        if type(error).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"):
            raise HubError(f"cannot push to {repo_id!r}: the Hub is unreachable ({type(error).__name__}: {error})") from None
        raise


class HubMixin:
    """Save / load / push written once for the tokenizer and the prior. A subclass sets `hub_files` (the files of
    a saved folder) and `hub_commit_message`, and implements `_save_pretrained(directory, model_name)` and
    `_from_pretrained(directory, **kwargs)`; this class resolves bundled names, local folders and Hub repo ids,
    and pushes a folder as one commit.

    Why not huggingface_hub's ModelHubMixin: its from_pretrained fetches config.json from the Hub for any name
    that is not a local folder, so our bundled names would hit the network (and fail offline), and it writes one
    config file where we write several files atomically; the shape of the API here is the same."""

    hub_files: tuple[str, ...] = ()
    hub_commit_message = "Upload model"
    other_kind_files: tuple[str, ...] = ()  # files that mark a folder as holding the other kind of saved model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> Any:
        """A saved folder, a bundled name, or a Hub repo id (through the cache; offline-safe)."""
        directory = resolve_pretrained(name_or_path, allow_patterns=list(cls.hub_files), revision=revision, cache_dir=cache_dir,
                                       token=token, local_files_only=local_files_only)
        return cls._from_pretrained(directory, **kwargs)

    def save_pretrained(
        self, save_directory: str | os.PathLike, model_name: str | None = None, push_to_hub: bool = False,
        repo_id: str | None = None, **push_kwargs: Any,
    ) -> list[Path]:
        """Write every file (atomically) into save_directory; with push_to_hub, also upload them as one commit.

        Only the files of `hub_files` are replaced, each by a rename, so a symlink of that name is replaced by the
        file and what it pointed to is left as it was; every other file stays. A folder holding the other kind of
        model (a prior's for a tokenizer, and the reverse) is refused: its files of the same names are its own."""
        directory = Path(save_directory)
        held = [name for name in self.other_kind_files if (directory / name).exists()]
        if held:
            clash = sorted(set(self.hub_files) & {"config.json", "model.safetensors", "README.md"})
            raise CheckpointError(f"{directory} holds another kind of saved model ({held[0]}); saving a "
                                  f"{type(self).__name__} there would replace its {', '.join(clash)}: choose another folder")
        directory.mkdir(parents=True, exist_ok=True)
        written = self._save_pretrained(directory, model_name or repo_id or directory.name)
        if push_to_hub:
            self.push_to_hub(repo_id or directory.name, **push_kwargs)
        return written

    def push_to_hub(
        self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
        token: str | bool | None = None, revision: str | None = None, create_pr: bool = False,
    ) -> Any:
        """Save to a temporary folder and upload it as one commit with huggingface_hub; returns the CommitInfo."""
        return push_folder_to_hub(
            lambda folder: self._save_pretrained(folder, repo_id), repo_id,
            commit_message=commit_message or self.hub_commit_message, private=private, token=token,
            revision=revision, create_pr=create_pr,
        )

    @classmethod
    def _from_pretrained(cls, directory: Path, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _save_pretrained(self, directory: Path, model_name: str) -> list[Path]:
        raise NotImplementedError
