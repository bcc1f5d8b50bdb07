"""Push a saved adapter folder to the Hub: only the adapter's own files, in one commit, never base weights or pickles.

A training output folder also holds checkpoints, optimizer states, `training_args.bin` (a pickle) and logs. None of
that belongs in a shared adapter repo, so the upload is an allow-list rather than a folder upload with ignores.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.utils import get_token
from safetensors import safe_open

from ..model import AdapterModel

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
REQUIRED_FILES = (WEIGHTS_NAME, CONFIG_NAME)
# The image processor's config (and a processor's, for models that have one) and the model card.
OPTIONAL_FILES = ("preprocessor_config.json", "processor_config.json", "README.md")
# Every card rendered from model_cards/adapter_card.md carries this comment.
CARD_MARKER = "Rendered by hf_vit_adapter.sharing.write_model_card"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def push_adapter_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload bottleneck adapter",
) -> str:
    """Create `repo_id` (private if asked) and upload the adapter files of `folder` to it in one commit.

    Uploads `adapter_model.safetensors`, `adapter_config.json`, the image processor config and `README.md` when
    present, and nothing else. Returns the URL of the commit.

    Raises:
        FileNotFoundError: `folder` lacks `adapter_model.safetensors` or `adapter_config.json`.
        ValueError: the weights hold tensors besides the adapter and its saved modules (base weights), a file to
            upload contains the token, or `private=True` was asked for an existing public repo.
    """
    folder = Path(folder)
    names = adapter_files(folder)
    _refuse_token_in_files(folder, names, token or get_token())
    _warn_about_foreign_card(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if private and not api.repo_info(repo_id).private:
        raise ValueError(
            f"{repo_id} already exists and is public, but private=True was asked; not pushing. Make the repo "
            "private on the Hub first, or push to a new repo id."
        )
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in names]
    commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message)
    left_out = sorted(path.name for path in folder.iterdir() if path.name not in names)
    if left_out:
        logger.info("Pushed %s to %s; left out: %s.", ", ".join(names), repo_id, ", ".join(left_out))
    return commit.commit_url


def adapter_files(folder: Path) -> list[str]:
    """Names of the files of `folder` that may be pushed, after checking that it holds a safetensors adapter."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; save the adapter with `model.save_pretrained(folder)`.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        pickles = sorted(path.name for path in folder.glob("adapter_model.*") if path.suffix in PICKLE_SUFFIXES)
        hint = (
            f" It holds {', '.join(pickles)}, a pickle, which is never pushed: save with "
            "`model.save_pretrained(folder, safe_serialization=True)`."
            if pickles
            else " Save the adapter with `model.save_pretrained(folder)` first."
        )
        raise FileNotFoundError(f"{folder} has no {' or '.join(missing)}, so it holds no adapter to push.{hint}")
    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    _check_only_adapter_tensors(folder / WEIGHTS_NAME, config.get("modules_to_save") or [])
    base = config.get("base_model_name_or_path")
    if base and (base.startswith(("/", "~", ".")) or "\\" in base):
        logger.warning(
            "adapter_config.json names a local base model; loading this repo by id will need the base on the Hub."
        )
    return [*REQUIRED_FILES, *(name for name in OPTIONAL_FILES if (folder / name).is_file())]


def _check_only_adapter_tensors(weights: Path, modules_to_save: list[str]) -> None:
    """Refuse a weights file that holds more than adapter projections and the saved modules (e.g. the head)."""
    with safe_open(str(weights), framework="pt") as tensors:
        keys = list(tensors.keys())
    foreign = [
        key
        for key in keys
        if AdapterModel.prefix not in key and not any(f".{name}." in f".{key}" for name in modules_to_save)
    ]
    if foreign:
        raise ValueError(
            f"{weights.name} holds {len(foreign)} tensors that belong to neither the adapters nor the saved modules "
            f"{modules_to_save} (e.g. {foreign[0]!r}): base model weights are never pushed. Save the adapter with "
            "`PeftModel.save_pretrained` instead."
        )


def _warn_about_foreign_card(folder: Path) -> None:
    """The repo's card should be the project's; PEFT's `save_pretrained` writes a generic one without results."""
    readme = folder / "README.md"
    if not readme.is_file():
        logger.warning("%s has no README.md, so the repo gets no model card; write one with write_model_card.", folder)
    elif CARD_MARKER not in readme.read_text(encoding="utf-8", errors="replace"):
        logger.warning("%s/README.md was not written by write_model_card; pushing it as it is.", folder)


def _refuse_token_in_files(folder: Path, names: list[str], token: str | None) -> None:
    if not token:
        return
    for name in names:
        if token.encode() in (folder / name).read_bytes():
            raise ValueError(f"{name} contains your Hub token; not pushing it. Remove the token from that file.")
