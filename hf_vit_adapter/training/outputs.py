"""The output folder: never silently replace an earlier run, and swap in a finished run's files all at once.

A run's outputs (`RUN_FILES`: the adapter, its config, the image processor, the card, the results, the trainer state)
must always belong together: `adapter_config.json` of one run beside the weights of another does not load. They are
written into a staging folder beside `--output_dir`, which then takes the output folder's place in one atomic
`renameat2(RENAME_EXCHANGE)`. Everything else in the folder (`checkpoint-*`, logs) is carried into the staging folder
as hard links first, so nothing is copied and nothing is lost. A kill at any moment leaves either the old complete
set or the new one at `--output_dir`; a leftover staging folder is removed by the next run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from .checkpoints import earlier_checkpoints
from .errors import InputError

logger = logging.getLogger(__name__)

RUN_FILES = (
    "adapter_model.safetensors",
    "adapter_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "README.md",
    "training_args.json",
    "trainer_state.json",
    "train_results.json",
    "eval_results.json",
    "all_results.json",
)
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def check_output_dir(output_dir: str, *, overwrite: bool, resuming: bool) -> None:
    """Refuse to train into a folder that holds an earlier run, unless told to replace it or to continue it."""
    folder = Path(output_dir)
    if overwrite or resuming or not folder.is_dir():
        return
    entries = sorted(path.name for path in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise InputError(
            f"--output_dir {output_dir} is not empty ({shown}): it holds an earlier run. Pass "
            "--overwrite_output_dir to replace it, --resume_from_checkpoint true to continue it, or another "
            "--output_dir."
        )


def remove_earlier_checkpoints(output_dir: str) -> None:
    """With `--overwrite_output_dir`, the earlier run's checkpoints go, so `--resume_from_checkpoint true` can only
    ever find this run's own."""
    for checkpoint in earlier_checkpoints(Path(output_dir)):
        logger.warning(f"--overwrite_output_dir: deleting {checkpoint} of the earlier run.")
        shutil.rmtree(checkpoint)


def staging_folder(output_dir: str | Path) -> Path:
    """Where a run's outputs are written before they replace `output_dir`'s: beside it, on the same file system."""
    folder = Path(output_dir).resolve()
    return folder.parent / f".{folder.name}.staging"


def remove_leftovers(output_dir: str | Path) -> None:
    """Clear up after a run killed while saving: its staging folder goes, and an output folder that a non-atomic
    swap had renamed aside, and not yet replaced, comes back."""
    output_dir = Path(output_dir).resolve()
    old = _old_folder(output_dir)
    if old.exists() and not output_dir.exists():
        logger.warning(f"Restoring {output_dir} from {old}: a run was stopped while replacing it.")
        os.rename(old, output_dir)
    for leftover in (staging_folder(output_dir), old):
        if leftover.exists():
            logger.warning(f"Removing {leftover}, left by a run that was stopped while saving.")
            shutil.rmtree(leftover)


def stage(output_dir: str | Path) -> Path:
    """An empty staging folder for a run's files, after clearing what a killed run left."""
    remove_leftovers(output_dir)
    staging = staging_folder(output_dir)
    staging.mkdir(parents=True)
    return staging


def publish(output_dir: str | Path, staging: Path, replaced: Iterable[str] = RUN_FILES) -> None:
    """Make the files in `staging` the content of `output_dir` in one atomic step.

    Entries of `output_dir` named in `replaced` are dropped unless `staging` holds them anew (an earlier run's
    results must not stay beside a new adapter); every other entry (checkpoints, logs) is carried over as hard links.
    """
    output_dir = Path(output_dir).resolve()
    if not output_dir.exists():
        os.rename(staging, output_dir)
        return
    replaced = set(replaced)
    for entry in output_dir.iterdir():
        if entry.name not in replaced and not (staging / entry.name).exists():
            _link_tree(entry, staging / entry.name)
    _swap(output_dir, staging)
    shutil.rmtree(staging)  # now the earlier set


def _old_folder(output_dir: str | Path) -> Path:
    folder = Path(output_dir).resolve()
    return folder.parent / f".{folder.name}.old"


def _link_tree(source: Path, target: Path) -> None:
    """Recreate `source` at `target` with hard links (a copy where the file system has none)."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, copy_function=_link_or_copy, symlinks=True)
    elif source.is_symlink():
        os.symlink(os.readlink(source), target)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _swap(output_dir: Path, staging: Path) -> None:
    """Exchange the two folders atomically; where the kernel or file system cannot, rename one after the other."""
    if _exchange(staging, output_dir):
        return
    logger.debug("Atomic exchange unavailable; renaming the output folder aside, then the new one in.")
    old = _old_folder(output_dir)
    os.rename(output_dir, old)
    os.rename(staging, output_dir)
    os.rename(old, staging)


def _exchange(first: Path, second: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EBUSY):
        return False
    raise OSError(error, os.strerror(error), str(second))
