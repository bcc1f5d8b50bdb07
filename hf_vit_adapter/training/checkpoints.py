"""Which `checkpoint-*` folder a run may resume from: a complete one, written by a run of the same adapter.

`Trainer` writes a checkpoint file by file (weights, optimizer, scheduler, RNG state, and `trainer_state.json` last),
so a run killed while saving leaves an empty or partial `checkpoint-N`. Resuming from it would die on a missing or
truncated file; resuming from another run's checkpoint would load weights of another shape, or silently continue
the wrong run. Both are caught here, before any data is loaded.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import InputError

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
STATE_NAME = "trainer_state.json"
# Settings that shape the adapter or what it computes; a checkpoint that differs in one belongs to another run.
MATCHING_SETTINGS = (
    "bottleneck_size",
    "placement",
    "non_linearity",
    "scaling",
    "dropout",
    "drop_path",
    "target_modules",
    "layers_to_transform",
)
# Settings that checkpoints of hf-vit-adapter 0.1.0 do not record, with the value those adapters had.
_ADDED_SINCE_0_1_0 = {"drop_path": 0.0}
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_problems(folder: Path) -> list[str]:
    """What keeps `folder` from being a complete checkpoint (empty when it is one).

    Checks that each file `Trainer` needs to resume is there and readable: the adapter weights (safetensors
    header), its config and the trainer state (JSON), and the optimizer and scheduler (complete zip archives).
    """
    problems = []
    for name in (WEIGHTS_NAME, CONFIG_NAME, STATE_NAME):
        if not (folder / name).is_file():
            problems.append(f"no {name}")
    state = _read_json(folder / STATE_NAME)
    if (folder / STATE_NAME).is_file() and state is None:
        problems.append(f"{STATE_NAME} is cut short")
    if (folder / CONFIG_NAME).is_file() and _read_json(folder / CONFIG_NAME) is None:
        problems.append(f"{CONFIG_NAME} is cut short")
    if (folder / WEIGHTS_NAME).is_file() and not _readable_safetensors(folder / WEIGHTS_NAME):
        problems.append(f"{WEIGHTS_NAME} is cut short")
    for name in ("optimizer.pt", "scheduler.pt"):
        path = folder / name
        if not path.is_file():
            problems.append(f"no {name}")
        elif not zipfile.is_zipfile(path):
            problems.append(f"{name} is cut short")
    return problems


def newest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The `checkpoint-N` with the highest N that is complete; each newer, incomplete one is skipped with a warning."""
    for folder in sorted(_checkpoints(output_dir), key=_step, reverse=True):
        problems = checkpoint_problems(folder)
        if not problems:
            return folder
        logger.warning(f"Skipping incomplete checkpoint {folder} ({', '.join(problems)}): a save was cut short.")
    return None


def resolve_checkpoint(requested: str | None, output_dir: str) -> Path | None:
    """`--resume_from_checkpoint PATH`, or `true` / `last` / `latest` for the newest complete one in `output_dir`."""
    if requested is None:
        return None
    if requested.lower() in ("true", "last", "latest"):
        last = newest_complete_checkpoint(Path(output_dir))
        if last is None:
            found = [folder.name for folder in earlier_checkpoints(Path(output_dir))]
            detail = f" (only incomplete ones: {', '.join(found)})" if found else ""
            raise InputError(
                f"--resume_from_checkpoint {requested}: no complete checkpoint-* folder in {output_dir}{detail}."
            )
        return last
    folder = Path(requested)
    if not folder.is_dir():
        raise InputError(f"--resume_from_checkpoint {requested} is not a folder.")
    problems = checkpoint_problems(folder)
    if problems:
        raise InputError(
            f"--resume_from_checkpoint {requested} is not a complete checkpoint ({', '.join(problems)}); "
            "pick another checkpoint-* folder, or --resume_from_checkpoint true for the newest complete one."
        )
    return folder


def check_checkpoint_matches(checkpoint: Path, adapter_settings: dict[str, Any]) -> None:
    """Refuse a checkpoint whose adapter differs from the one this run builds (`adapter_settings`: its config)."""
    saved = {**_ADDED_SINCE_0_1_0, **(_read_json(checkpoint / CONFIG_NAME) or {})}
    differences = [
        f"{name} {_comparable(saved.get(name))!r} there, {_comparable(adapter_settings.get(name))!r} here"
        for name in MATCHING_SETTINGS
        if _comparable(saved.get(name)) != _comparable(adapter_settings.get(name))
    ]
    if differences:
        raise InputError(
            f"--resume_from_checkpoint {checkpoint} holds another adapter ({'; '.join(differences)}). Resume with "
            "the settings it was trained with, or start afresh in another --output_dir (or --overwrite_output_dir)."
        )


def check_checkpoint_labels(checkpoint: Path, id2label: dict[int, str]) -> None:
    """Refuse a checkpoint whose head was trained on other classes than this run's dataset has."""
    saved = (_read_json(checkpoint / CONFIG_NAME) or {}).get("id2label")
    if saved is not None and {int(key): value for key, value in saved.items()} != id2label:
        raise InputError(
            f"--resume_from_checkpoint {checkpoint} was trained on other classes ({len(saved)}: "
            f"{', '.join(list(saved.values())[:5])}...) than this dataset has ({len(id2label)}); resume it on "
            "the data it was trained on."
        )


def earlier_checkpoints(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, oldest first, complete or not."""
    return sorted(_checkpoints(output_dir), key=_step)


def _checkpoints(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return [path for path in output_dir.iterdir() if path.is_dir() and _CHECKPOINT.match(path.name)]


def _step(folder: Path) -> int:
    return int(_CHECKPOINT.match(folder.name).group(1))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _readable_safetensors(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as tensors:
            tensors.keys()
    except Exception:  # noqa: BLE001 - safetensors raises several types for a truncated or empty file
        return False
    return True


def _comparable(value: Any) -> Any:
    """Lists and sets compare regardless of order (`target_modules` is saved as a list, held as a set)."""
    if isinstance(value, (list, tuple, set)):
        return sorted(str(item) for item in value)
    return value
