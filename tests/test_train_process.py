"""What only a real process shows: the installed `hf-vit-adapter-train` script's exit code after a run (exit code 2
for bad input: `test_train_errors.py`), and runs SIGKILLed while they save. A kill is made deterministic by a small
wrapper that lets `safetensors` write one weights file into the folder being saved and then kills its own process,
the moment a save is most fragile (weights of the new run, config of none)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from train_helpers import (
    make_image_folder,
    make_tiny_vit,
    offline_env,
    one_thread,  # noqa: F401 - an autouse fixture
    read_json,
    train_run,
)

from hf_vit_adapter.training.outputs import RUN_FILES, staging_folder

KILL_AFTER_WEIGHTS = """
import os, signal, sys
import safetensors.torch

marker, save_file = sys.argv[1], safetensors.torch.save_file

def save_then_die(tensors, filename, *args, **kwargs):
    save_file(tensors, filename, *args, **kwargs)
    if marker in str(filename):
        os.kill(os.getpid(), signal.SIGKILL)

safetensors.torch.save_file = save_then_die  # before peft and transformers bind it
from hf_vit_adapter.train import main
main(sys.argv[2:])
"""


def installed_script() -> str:
    script = Path(sys.executable).parent / "hf-vit-adapter-train"
    found = str(script) if script.is_file() else shutil.which("hf-vit-adapter-train")
    if found is None:
        pytest.skip("hf-vit-adapter-train is not installed: run `pip install -e .`")
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("process")
    make_tiny_vit(root / "backbone")
    make_image_folder(root / "train", per_class=12)
    make_image_folder(root / "validation", per_class=2, seed=1)
    recipe = {
        "model_name_or_path": str(root / "backbone"),
        "train_dir": str(root / "train"),
        "validation_dir": str(root / "validation"),
        "output_dir": str(root / "recipe_output"),
        "bottleneck_size": 4,
        "bf16": True,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 8,
        "learning_rate": 0.003,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "cache_dir": str(root / "cache"),
    }
    (root / "recipe.json").write_text(json.dumps(recipe))
    return root


def run(command: list[str], workspace: Path) -> subprocess.CompletedProcess:
    env = offline_env(workspace)  # PYTHONPATH is inherited, so the script runs this checkout's code
    return subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)


def run_set(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in RUN_FILES if (folder / name).is_file()}


@pytest.fixture(scope="module")
def finished(workspace):
    """`hf-vit-adapter-train recipe.json --output_dir ... --bf16 false`: the recipe, adapted by flags."""
    output_dir = workspace / "out"
    result = run([installed_script(), "recipe.json", "--output_dir", str(output_dir), "--bf16", "false"], workspace)
    return output_dir, result


def test_the_installed_script_exits_0_after_a_run_with_a_config_file_and_flags(finished):
    output_dir, result = finished
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "eval_accuracy" in result.stdout
    arguments = read_json(output_dir / "training_args.json")
    assert arguments["bf16"] is False and arguments["output_dir"] == str(output_dir)  # the flags won
    assert read_json(output_dir / "adapter_config.json")["bottleneck_size"] == 4  # the file's value
    assert not (output_dir.parent / "recipe_output").exists()


def test_a_kill_during_the_final_save_keeps_the_earlier_run(finished, workspace):
    output_dir, _ = finished
    before = run_set(output_dir)
    flags = [
        str(workspace / "recipe.json"),
        "--output_dir",
        str(output_dir),
        "--bf16",
        "false",
        "--bottleneck_size",
        "8",
    ]
    killed = run([sys.executable, "-c", KILL_AFTER_WEIGHTS, ".staging", *flags, "--overwrite_output_dir"], workspace)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (staging_folder(output_dir) / "adapter_model.safetensors").is_file()  # it died mid-save
    assert run_set(output_dir) == before  # the earlier run's complete set, untouched

    from transformers import AutoModelForImageClassification

    import hf_vit_adapter  # noqa: F401 - registers the method

    assert AutoModelForImageClassification.from_pretrained(str(output_dir)).config.num_labels == 3
    # the same command again succeeds and clears what the killed run left
    train_run([*flags, "--overwrite_output_dir"])
    assert not staging_folder(output_dir).exists()
    assert read_json(output_dir / "adapter_config.json")["bottleneck_size"] == 8
    with safe_open(str(output_dir / "adapter_model.safetensors"), framework="pt") as weights:
        shapes = {weights.get_slice(key).get_shape()[0] for key in weights.keys() if key.endswith(".down.weight")}
    assert shapes == {8}


def test_a_kill_during_a_checkpoint_save_resumes_from_the_newest_complete_one(workspace, caplog):
    output_dir = workspace / "checkpointed"
    flags = [str(workspace / "recipe.json"), "--output_dir", str(output_dir), "--bf16", "false", "--max_steps", "6"]
    flags += ["--save_strategy", "steps", "--save_steps", "2", "--do_eval", "false"]
    killed = run([sys.executable, "-c", KILL_AFTER_WEIGHTS, "checkpoint-4", *flags], workspace)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    cut_short = {path.name for path in (output_dir / "checkpoint-4").iterdir()}
    assert "adapter_model.safetensors" in cut_short and "adapter_config.json" not in cut_short

    train_run([*flags, "--resume_from_checkpoint", "true"])
    skipped = [record.getMessage() for record in caplog.records if "Skipping incomplete" in record.getMessage()]
    assert len(skipped) == 1 and f"{output_dir / 'checkpoint-4'} (no adapter_config.json" in skipped[0]
    assert read_json(output_dir / "trainer_state.json")["global_step"] == 6
    assert "train_loss" in read_json(output_dir / "all_results.json")
    assert "train_loss covers" not in caplog.text  # checkpoint-2 carried the loss of steps 1-2: a whole-run mean
