"""The output folder's rules on their own: the guard against replacing an earlier run, the atomic swap of a run's
files (killed at every step it takes), and which checkpoint a resume may use."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hf_vit_adapter.training import outputs
from hf_vit_adapter.training.checkpoints import checkpoint_problems, resolve_checkpoint
from hf_vit_adapter.training.errors import InputError
from hf_vit_adapter.training.outputs import check_output_dir, publish, remove_leftovers, stage, staging_folder

RUN_SET = ("adapter_model.safetensors", "adapter_config.json", "README.md", "all_results.json")


def write_run(folder: Path, run: str) -> None:
    """A run's files, each saying which run wrote it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in RUN_SET:
        (folder / name).write_text(f"{run}\n")


def run_of(folder: Path) -> str:
    """Which run the folder's set belongs to; fails unless every file of the set is there and from one run."""
    runs = {(folder / name).read_text() for name in RUN_SET}
    assert len(runs) == 1, f"mixed set in {folder}: {runs}"
    return runs.pop().strip()


def fs_operations(monkeypatch: pytest.MonkeyPatch, kill_at: int) -> None:
    """Make this process SIGKILL itself just before its `kill_at`-th file-system change."""
    count = [0]

    def guarded(function):
        def wrapper(*args, **kwargs):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return wrapper

    for module, name in [(os, "rename"), (os, "link"), (os, "mkdir"), (os, "unlink"), (os, "rmdir"), (os, "symlink")]:
        monkeypatch.setattr(module, name, guarded(getattr(module, name)))
    monkeypatch.setattr(shutil, "copy2", guarded(shutil.copy2))
    monkeypatch.setattr(outputs, "_exchange", guarded(outputs._exchange))


def publish_in_child(output_dir: Path, kill_at: int, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Publish run B over `output_dir` in a forked child killed at its `kill_at`-th step; True if it was killed."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest teardown, ever
        try:
            staging = stage(output_dir)
            write_run(staging, "B")
            fs_operations(monkeypatch, kill_at)
            publish(output_dir, staging, replaced=(*RUN_SET, "eval_results.json"))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("exchange", ["renameat2", "rename fallback"])
def test_a_kill_at_any_step_of_the_swap_leaves_one_complete_set(tmp_path, monkeypatch, exchange):
    if exchange == "rename fallback":
        monkeypatch.setattr(outputs, "_exchange", lambda first, second: False)
    killed_at = []
    for kill_at in range(1, 100):
        output_dir = tmp_path / f"kill{kill_at}" / "out"
        write_run(output_dir, "A")
        (output_dir / "checkpoint-5").mkdir()
        (output_dir / "checkpoint-5" / "optimizer.pt").write_text("A's optimizer")
        (output_dir / "eval_results.json").write_text("A's results, which run B does not write")
        if not publish_in_child(output_dir, kill_at, monkeypatch):
            break
        killed_at.append(kill_at)
        remove_leftovers(output_dir)  # what the next run does first
        assert run_of(output_dir) in ("A", "B")
        assert (output_dir / "checkpoint-5" / "optimizer.pt").read_text() == "A's optimizer"
        assert not staging_folder(output_dir).exists()
    assert len(killed_at) >= 3  # the swap took several steps, and each was interrupted once
    assert run_of(output_dir) == "B" and not (output_dir / "eval_results.json").exists()
    assert (output_dir / "checkpoint-5" / "optimizer.pt").read_text() == "A's optimizer"  # carried over
    assert sorted(path.name for path in output_dir.parent.iterdir()) == ["out"]  # nothing left beside it


def test_a_new_output_dir_is_created_by_the_swap(tmp_path):
    output_dir = tmp_path / "new" / "out"
    staging = stage(output_dir)
    write_run(staging, "B")
    publish(output_dir, staging)
    assert run_of(output_dir) == "B" and not staging.exists()


def test_the_guard_refuses_an_earlier_run_unless_told(tmp_path):
    check_output_dir(str(tmp_path / "missing"), overwrite=False, resuming=False)
    (tmp_path / "empty").mkdir()
    check_output_dir(str(tmp_path / "empty"), overwrite=False, resuming=False)
    write_run(tmp_path / "done", "A")
    with pytest.raises(InputError, match="--overwrite_output_dir to replace it, --resume_from_checkpoint true"):
        check_output_dir(str(tmp_path / "done"), overwrite=False, resuming=False)
    check_output_dir(str(tmp_path / "done"), overwrite=True, resuming=False)
    check_output_dir(str(tmp_path / "done"), overwrite=False, resuming=True)


def complete_checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"bottleneck_size": 4}))
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({"step": step}, folder / name)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_checkpoint_problems_name_what_is_missing_or_cut_short(tmp_path):
    good = complete_checkpoint(tmp_path / "checkpoint-2", 2)
    assert checkpoint_problems(good) == []
    (tmp_path / "empty").mkdir()
    assert "no adapter_model.safetensors" in checkpoint_problems(tmp_path / "empty")
    cut = complete_checkpoint(tmp_path / "checkpoint-4", 4)
    weights = (cut / "adapter_model.safetensors").read_bytes()
    (cut / "adapter_model.safetensors").write_bytes(weights[: len(weights) - 3])
    optimizer = (cut / "optimizer.pt").read_bytes()
    (cut / "optimizer.pt").write_bytes(optimizer[: len(optimizer) // 2])
    (cut / "trainer_state.json").write_text('{"global_st')
    assert checkpoint_problems(cut) == [
        "trainer_state.json is cut short",
        "adapter_model.safetensors is cut short",
        "optimizer.pt is cut short",
    ]


def test_resume_takes_the_newest_complete_checkpoint_and_names_the_skipped_ones(tmp_path, caplog):
    complete_checkpoint(tmp_path / "checkpoint-2", 2)
    complete_checkpoint(tmp_path / "checkpoint-10", 10)
    (tmp_path / "checkpoint-12").mkdir()  # killed as the save began
    partial = complete_checkpoint(tmp_path / "checkpoint-14", 14)
    (partial / "trainer_state.json").unlink()  # killed before the trainer state, which is written last
    assert resolve_checkpoint("true", str(tmp_path)) == tmp_path / "checkpoint-10"
    skipped = [record.getMessage() for record in caplog.records if "Skipping incomplete checkpoint" in record.message]
    assert [message.split()[3] for message in skipped] == [str(partial), str(tmp_path / "checkpoint-12")]
    with pytest.raises(InputError, match=r"checkpoint-12 is not a complete checkpoint \(no adapter_model"):
        resolve_checkpoint(str(tmp_path / "checkpoint-12"), str(tmp_path))
    shutil.rmtree(tmp_path / "checkpoint-2")
    shutil.rmtree(tmp_path / "checkpoint-10")
    with pytest.raises(InputError, match=r"no complete checkpoint-\* folder .* \(only incomplete ones: checkpoint-12"):
        resolve_checkpoint("latest", str(tmp_path))
