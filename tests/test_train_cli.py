"""End to end through `hf_vit_adapter.train` on a tiny ViT and image folders made here: training, accuracy, what lands
in the output and checkpoint folders, loading the result with `pipeline`, resuming (mid-epoch, bit for bit; a
finished run), reproducible seeds, the output-folder guard, evaluation-only runs, the recorded base, and precision
flags."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from train_helpers import (
    COLOURS,
    colour_image,
    make_image_folder,
    make_tiny_vit,
    one_thread,  # noqa: F401 - an autouse fixture
    quick_args,
    read_json,
    train_run,
)

import hf_vit_adapter  # noqa: F401 - registers the adapter method for pipeline / from_pretrained
from hf_vit_adapter.train import main
from hf_vit_adapter.training.checkpoints import resolve_checkpoint

STEPS = 15  # 3 classes x 12 images = 36 train images, batch 8 -> 5 steps per epoch, 3 epochs
RUN_FILES = ("adapter_model.safetensors", "adapter_config.json", "README.md", "all_results.json", "eval_results.json")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cli")
    make_tiny_vit(root / "backbone")
    make_image_folder(root / "train", per_class=12)
    make_image_folder(root / "validation", per_class=4, seed=1)
    return root


def folder_args(workspace, output_dir, **overrides) -> list[str]:
    return quick_args(
        workspace / "backbone",
        output_dir,
        train_dir=str(workspace / "train"),
        validation_dir=str(workspace / "validation"),
        learning_rate="0.003",  # learns the three colours from any --seed in 15 steps (0.01 fails for some)
        **overrides,
    )


@pytest.fixture(scope="module")
def trained(workspace):
    """One full run that saves a checkpoint every 3 steps (mid-epoch but for the last); several tests read what it
    left."""
    output_dir = workspace / "out"
    metrics = train_run(folder_args(workspace, output_dir, save_strategy="steps", save_steps="3"))
    return output_dir, metrics


def adapter_keys(folder) -> set[str]:
    return set(load_file(folder / "adapter_model.safetensors"))


def test_run_reports_accuracy_and_writes_adapter_processor_metrics_and_card(trained):
    output_dir, metrics = trained
    assert metrics["eval_accuracy"] >= 0.9  # one colour per class: easy even for a random tiny backbone
    assert "eval_top5_accuracy" not in metrics  # only 3 classes
    assert read_json(output_dir / "eval_results.json")["eval_accuracy"] == metrics["eval_accuracy"]
    all_results = read_json(output_dir / "all_results.json")
    assert all_results["eval_accuracy"] == metrics["eval_accuracy"] and "train_loss" in all_results
    config = read_json(output_dir / "adapter_config.json")
    assert config["peft_type"] == "BOTTLENECK" and config["bottleneck_size"] == 4
    assert {int(k): v for k, v in config["id2label"].items()} == dict(enumerate(sorted(COLOURS)))
    assert read_json(output_dir / "preprocessor_config.json")["image_processor_type"] == "ViTImageProcessor"
    card = (output_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft") and "Top-1 Accuracy" in card
    front_matter = yaml.safe_load(card.split("---")[1])
    card_metrics = front_matter["model-index"][0]["results"][0]["metrics"]
    assert card_metrics[0]["type"] == "accuracy"
    assert card_metrics[0]["value"] == pytest.approx(metrics["eval_accuracy"], abs=1e-6)
    assert "| red |" in card


def test_output_dir_holds_no_backbone_weights(trained):
    output_dir, _ = trained
    top_level = {path.name for path in output_dir.iterdir() if path.is_file()}
    assert not top_level & {"model.safetensors", "pytorch_model.bin", "config.json"}
    # Trainer's arguments as JSON with tokens masked, never pickled (`training_args.bin`).
    assert not [path for path in output_dir.rglob("training_args.bin")]
    assert json.loads((output_dir / "training_args.json").read_text())["output_dir"] == str(output_dir)
    keys = adapter_keys(output_dir)
    assert keys and all("bottleneck_" in key or "classifier" in key for key in keys)


def test_checkpoints_hold_only_trainable_weights_and_optimizer_state(trained):
    output_dir, _ = trained
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert [path.name for path in checkpoints] == [f"checkpoint-{step}" for step in (3, 6, 9, 12, 15)]
    for checkpoint in checkpoints:
        names = {path.name for path in checkpoint.iterdir()}
        assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= names
        assert not names & {"model.safetensors", "pytorch_model.bin", "config.json"}
        keys = adapter_keys(checkpoint)
        assert all("bottleneck_" in key or "classifier" in key for key in keys)
        optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        # one Adam state per trainable tensor: the adapters and the head, nothing of the frozen backbone
        assert len(optimizer["state"]) == len(keys)


def test_pipeline_and_from_pretrained_load_the_output_dir(trained):
    from transformers import AutoModelForImageClassification, pipeline

    output_dir, _ = trained
    classifier = pipeline("image-classification", model=str(output_dir), device="cpu")
    for index, (name, colour) in enumerate(COLOURS.items()):
        prediction = classifier(colour_image(colour, seed=999 + index), top_k=3)
        assert {p["label"] for p in prediction} == set(COLOURS)
        assert prediction[0]["label"] == name
    model = AutoModelForImageClassification.from_pretrained(str(output_dir))
    assert model.config.num_labels == 3 and model.config.id2label[0] == "blue"


def test_resume_from_a_mid_epoch_checkpoint_matches_the_uninterrupted_run_bit_for_bit(trained, workspace):
    """checkpoint-12 is 2 steps into the third epoch: Trainer skips those batches unread, and the augmentation of
    every image depends only on (seed, epoch, index), so the resumed run sees the very images the first one saw."""
    output_dir, metrics = trained
    resumed_dir = workspace / "resumed"
    resumed_metrics = train_run(
        folder_args(workspace, resumed_dir, resume_from_checkpoint=str(output_dir / "checkpoint-12"))
    )
    state = read_json(resumed_dir / "trainer_state.json")
    assert state["global_step"] == STEPS
    # the resumed run logged only the steps after the checkpoint; earlier entries come from the checkpoint's state
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry][-5:] == [11, 12, 13, 14, 15]
    uninterrupted, resumed = (
        load_file(output_dir / "adapter_model.safetensors"),
        load_file(resumed_dir / "adapter_model.safetensors"),
    )
    assert uninterrupted.keys() == resumed.keys()
    assert all(torch.equal(uninterrupted[key], resumed[key]) for key in uninterrupted)
    # the loss of the whole run, not of the 3 steps this call trained
    assert resumed_metrics["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-12)
    assert resumed_metrics["eval_accuracy"] == metrics["eval_accuracy"]


def test_resuming_a_finished_run_reports_that_run(trained, workspace, caplog):
    output_dir, metrics = trained
    finished = workspace / "finished"
    shutil.copytree(output_dir, finished)
    again = train_run(folder_args(workspace, finished, resume_from_checkpoint="true"))
    assert "Nothing left to train" in caplog.text and "checkpoint-15 had reached step 15 of 15" in caplog.text
    results = read_json(finished / "all_results.json")
    assert results["train_loss"] == again["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-12)
    assert "train_runtime" not in results  # this call ran no step: no speed to report
    assert f"| train | loss | {metrics['train_loss']:.4f} |" in (finished / "README.md").read_text()


def test_the_same_seed_gives_the_same_adapter_and_a_local_base_is_recorded_absolute(workspace, monkeypatch):
    """The head and the adapters are drawn after seeding, and each image's augmentation from (seed, epoch, index),
    whichever dataloader worker makes it; the base is typed relative to the working folder."""
    monkeypatch.chdir(workspace)
    # 7 steps reach the second epoch, which persistent workers must learn of to draw new augmentations
    workers = {"seeded_a": {}, "seeded_b": {"dataloader_num_workers": "2", "dataloader_persistent_workers": "true"}}
    for name, loading in workers.items():
        args = dict(train_dir="train", max_steps="7", do_eval="false", **loading)
        train_run(quick_args(Path("backbone"), workspace / name, **args))
    first, second = (load_file(workspace / name / "adapter_model.safetensors") for name in ("seeded_a", "seeded_b"))
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)
    assert read_json(workspace / "seeded_a" / "adapter_config.json")["base_model_name_or_path"] == str(
        workspace / "backbone"
    )


def test_base_model_id_is_recorded_and_expected_load_reports_are_one_line(workspace, caplog, transformers_log):
    output_dir = workspace / "with_base_id"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # no --use_cpu: on a machine without an accelerator, pinned memory would only warn
        train_run(folder_args(workspace, output_dir, base_model_id="org/tiny-vit", max_steps="1", use_cpu=None))
    assert read_json(output_dir / "adapter_config.json")["base_model_name_or_path"] == "org/tiny-vit"
    card = (output_dir / "README.md").read_text()
    assert "base_model: org/tiny-vit" in card and "https://huggingface.co/org/tiny-vit" in card
    assert not [str(warning.message) for warning in caught if "pin_memory" in str(warning.message)]
    assert not [message for message in transformers_log if "LOAD REPORT" in message]
    loaded = [record.getMessage() for record in caplog.records if "Loaded" in record.getMessage()]
    head = "a new 3-way classification head (it is trained with the adapter)"
    assert loaded == [f"Loaded {workspace / 'backbone'} with {head}, as expected."]


def test_a_finished_run_is_replaced_only_with_overwrite_output_dir(trained, workspace, capsys):
    output_dir, _ = trained
    replaced = workspace / "replaced"
    shutil.copytree(output_dir, replaced)
    before = {name: (replaced / name).read_bytes() for name in RUN_FILES}
    with pytest.raises(SystemExit) as exit_info:
        main(folder_args(workspace, replaced, bottleneck_size="8", max_steps="2"))
    assert exit_info.value.code == 2
    assert "--overwrite_output_dir to replace it" in capsys.readouterr().err
    # resuming another folder's checkpoint does not continue the run in this one
    with pytest.raises(SystemExit):
        main(folder_args(workspace, replaced, resume_from_checkpoint=str(output_dir / "checkpoint-12")))
    assert "it holds an earlier run" in capsys.readouterr().err
    assert {name: (replaced / name).read_bytes() for name in RUN_FILES} == before
    args = folder_args(workspace, replaced, bottleneck_size="8", max_steps="2", save_strategy="steps", save_steps="1")
    train_run([*args, "--overwrite_output_dir"])
    assert read_json(replaced / "adapter_config.json")["bottleneck_size"] == 8
    # the earlier run's checkpoints are gone, so `--resume_from_checkpoint true` can only find this run's
    assert sorted(path.name for path in replaced.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert resolve_checkpoint("true", str(replaced)) == replaced / "checkpoint-2"


def test_evaluation_only_evaluates_the_trained_adapter_and_keeps_its_card(trained, workspace):
    output_dir, metrics = trained
    evaluated = workspace / "evaluated"
    shutil.copytree(output_dir, evaluated)
    card = (evaluated / "README.md").read_bytes()
    again = train_run(folder_args(workspace, evaluated, do_train="false"))
    assert again["eval_accuracy"] == metrics["eval_accuracy"]
    assert again["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-6)
    assert (evaluated / "README.md").read_bytes() == card
    results = read_json(evaluated / "all_results.json")
    assert results["train_loss"] == metrics["train_loss"] and results["eval_accuracy"] == metrics["eval_accuracy"]
    assert results["epoch"] == 3.0  # the training run's, not the evaluation's
    # another folder, the base the adapter records (no --model_name_or_path), the adapter given by path
    elsewhere = workspace / "evaluated_elsewhere"
    args = dict(do_train="false", adapter_name_or_path=str(output_dir), model_name_or_path=None)
    again = train_run(folder_args(workspace, elsewhere, **args))
    assert again["eval_accuracy"] == metrics["eval_accuracy"]
    assert sorted(path.name for path in elsewhere.iterdir()) == ["all_results.json", "eval_results.json"]


def test_resume_true_continues_from_the_newest_checkpoint(trained, workspace):
    output_dir, _ = trained
    continued = workspace / "continued"
    shutil.copytree(output_dir / "checkpoint-15", continued / "checkpoint-15")
    main(folder_args(workspace, continued, resume_from_checkpoint="true", num_train_epochs="4"))
    assert read_json(continued / "trainer_state.json")["global_step"] == STEPS + 5


def test_bf16_and_gradient_checkpointing_train_the_adapter(workspace):
    output_dir = workspace / "bf16_gc"
    metrics = train_run(folder_args(workspace, output_dir, bf16="true", gradient_checkpointing="true", max_steps="3"))
    assert "eval_accuracy" in metrics
    weights = load_file(output_dir / "adapter_model.safetensors")
    up = [value for key, value in weights.items() if ".bottleneck_" in key and key.endswith(".up.weight")]
    assert up and all(value.abs().sum() > 0 for value in up)  # zero at init: gradients reached every adapter
