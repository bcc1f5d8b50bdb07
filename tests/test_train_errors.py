"""Bad input ends a run with one clear line on stderr and exit code 2, never a traceback, and before any data is read
where the mistake can be seen without it; a run that diverges ends with one line and exit code 1; unreadable images
and unlabelled rows are skipped with a warning."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image, Value
from train_helpers import (
    colour_image,
    make_image_folder,
    make_tiny_vit,
    offline_env,
    one_thread,  # noqa: F401 - an autouse fixture
    quick_args,
    read_json,
    run_cli,
    train_run,
)

from hf_vit_adapter.train import main
from hf_vit_adapter.training.arguments import PROG


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_errors")
    make_tiny_vit(root / "backbone")
    make_image_folder(root / "train", per_class=4)
    return root


NOWHERE = "/no/such/folder"  # a --train_dir for mistakes that must be caught before any data is read


def parquet_dataset(folder, columns: dict, features: Features, split: str = "train"):
    """A local dataset folder (`--dataset_name folder`) holding one parquet split."""
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=features).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def fails_with(capsys, args: list[str], *fragments: str, code: int = 2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == code
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    err = errors[0]
    assert err.startswith("hf-vit-adapter-train: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def run_args(workspace, name: str, **overrides) -> list[str]:
    return quick_args(workspace / "backbone", workspace / name, **overrides)


def test_unknown_dataset_in_a_fresh_process(workspace):
    """The real entry point, offline: a Hub id that cannot be loaded is one line on stderr and exit code 2."""
    result = run_cli(run_args(workspace, "unknown", dataset_name="nobody/no-such-dataset"), workspace)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: Cannot load dataset nobody/no-such-dataset" in result.stderr


def test_console_script_reads_a_lone_config_file(workspace):
    """`hf-vit-adapter-train recipe.json`, the way recipes run; here the config names a dataset that is not there."""
    config = workspace / "recipe.json"
    settings = {
        "model_name_or_path": str(workspace / "backbone"),
        "dataset_name": str(workspace / "no_such_folder"),
        "output_dir": "o",
        "use_cpu": True,
    }
    config.write_text(json.dumps(settings))
    script = shutil.which("hf-vit-adapter-train")
    assert script, "pip install -e . installs the console script"
    result = subprocess.run([script, str(config)], env=offline_env(workspace), capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()  # one line: no usage, no traceback
    assert len(lines) == 1 and lines[0].startswith(
        f"{PROG}: error: Cannot load dataset {workspace / 'no_such_folder'}"
    )


def test_missing_train_dir(capsys, workspace):
    fails_with(capsys, run_args(workspace, "o", train_dir=str(workspace / "nowhere")), "nowhere is not a folder")


def test_zero_images(capsys, workspace):
    (workspace / "empty").mkdir()
    fails_with(capsys, run_args(workspace, "o", train_dir=str(workspace / "empty")), "empty holds no image files")


def test_missing_columns_name_the_existing_ones(capsys, workspace):
    args = run_args(workspace, "o", train_dir=str(workspace / "train"), image_column_name="picture_of")
    fails_with(capsys, args, "'picture_of' is not a column", "['image', 'label']")
    args = run_args(workspace, "o", train_dir=str(workspace / "train"), label_column_name="species")
    fails_with(capsys, args, "'species' is not a column", "['image', 'label']")


def test_undetectable_columns_name_the_existing_ones(capsys, workspace):
    features = Features({"photo_a": Image(), "photo_b": Image(), "y": ClassLabel(names=["a", "b"])})
    folder = parquet_dataset(
        workspace / "two_images",
        {"photo_a": [colour_image((0, 0, 0), 1)] * 2, "photo_b": [colour_image((0, 0, 0), 2)] * 2, "y": [0, 1]},
        features,
    )
    fails_with(capsys, run_args(workspace, "o", dataset_name=str(folder)), "--image_column_name", "'photo_a'")


def test_non_categorical_label_column(capsys, workspace):
    features = Features({"image": Image(), "label": Value("float32")})
    images = [colour_image((200, 0, 0), seed) for seed in range(4)]
    folder = parquet_dataset(workspace / "float_labels", {"image": images, "label": [0.5, 1.5, 2.5, 0.1]}, features)
    fails_with(capsys, run_args(workspace, "o", dataset_name=str(folder)), "'label'", "not categorical")


def test_unknown_split_and_bad_flags(capsys, workspace):
    train = str(workspace / "train")
    fails_with(capsys, run_args(workspace, "o", train_dir=train, eval_split_name="test"), "no split 'test'")
    # Adapter flags are checked while parsing, before any data is read: the missing folder goes unnoticed.
    fails_with(capsys, run_args(workspace, "o", train_dir="/no/such/folder", placement="sideways"), "`placement`")
    fails_with(capsys, run_args(workspace, "o", train_dir=train, max_train_samples="0"), "--max_train_samples")
    fails_with(
        capsys, run_args(workspace, "o", train_dir=train, resume_from_checkpoint="true"), "no complete checkpoint-*"
    )
    fails_with(capsys, run_args(workspace, "o", model_name_or_path=str(workspace / "none"), train_dir=train), "none")
    fails_with(capsys, ["--output_dir", "x"], "--dataset_name", "--train_dir")


def test_bad_config_files(capsys, workspace):
    bad = workspace / "unknown_key.json"
    bad.write_text('{"train_dir": "x", "bottleneck_width": 3}')
    fails_with(capsys, [str(bad)], "bottleneck_width")
    fails_with(capsys, [str(workspace / "missing.yaml")], "missing.yaml does not exist")


def test_corrupt_images_are_skipped_with_a_warning_naming_the_file(caplog, workspace):
    train = workspace / "train_with_bad"
    make_image_folder(train, per_class=4)
    (train / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (train / "green" / "truncated.png").write_bytes((train / "green" / "0.png").read_bytes()[:60])
    with caplog.at_level(logging.WARNING, logger="hf_vit_adapter"):
        metrics = train_run(
            run_args(workspace, "skipped", train_dir=str(train), train_val_split="0.25", max_steps="1")
        )
    skipped = [record.getMessage() for record in caplog.records if "Skipping unreadable image" in record.getMessage()]
    assert len(skipped) == 2
    assert any("red/broken.png" in message for message in skipped)
    assert any("green/truncated.png" in message for message in skipped)
    assert "eval_accuracy" in metrics


def test_all_images_unreadable(capsys, workspace):
    train = workspace / "all_bad"
    for name in ("cat", "dog"):
        (train / name).mkdir(parents=True)
        (train / name / f"{name}.png").write_bytes(b"junk")
    args = run_args(workspace, "o", train_dir=str(train), train_val_split="0")
    fails_with(capsys, args, "None of the 2 images", "cat.png")


def test_string_labels_any_image_mode_and_auto_columns_from_a_local_dataset(workspace):
    """`--dataset_name` on a local folder; columns `img` / `fine_label` found by name next to an extra column;
    string labels become classes; greyscale, palette, RGBA and CMYK images train; 6 classes give top-5."""
    names = ["ant", "bee", "cat", "dog", "eel", "fox"]
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(36):
        image = colour_image(tuple(int(v) for v in rng.integers(0, 255, 3)), seed=index)
        images.append(image.convert(["L", "P", "RGBA", "CMYK", "RGB", "LA"][index % 6]))
        labels.append(names[index % 6])
    features = Features({"img": Image(), "fine_label": Value("string"), "coarse_label": Value("int64")})
    folder = parquet_dataset(
        workspace / "string_labels", {"img": images, "fine_label": labels, "coarse_label": [0] * 36}, features
    )
    output_dir = workspace / "string_labels_out"
    metrics = train_run(run_args(workspace, "string_labels_out", dataset_name=str(folder), max_steps="2"))
    assert "eval_top5_accuracy" in metrics and 0.0 <= metrics["eval_top5_accuracy"] <= 1.0
    id2label = read_json(output_dir / "adapter_config.json")["id2label"]
    assert [id2label[str(index)] for index in range(6)] == names


@pytest.fixture(scope="module")
def short_run(workspace):
    """One optimizer step with a checkpoint: an earlier run to resume, refuse or keep."""
    train_run(
        run_args(
            workspace,
            "short",
            train_dir=str(workspace / "train"),
            max_steps="1",
            save_steps="1",
            save_strategy="steps",
            do_eval="false",
        )
    )
    return workspace / "short"


def test_flag_mistakes_are_one_line_before_any_data_is_read(capsys, workspace):
    def args(name="o", **flags):
        return run_args(workspace, name, train_dir=NOWHERE, **flags)

    fails_with(capsys, args(bottleneck_size="abc"), "argument --bottleneck_size", "invalid int value: 'abc'")
    fails_with(capsys, args(save_strategy="sometimes"), "--save_strategy", "invalid choice: 'sometimes'")
    fails_with(capsys, [*args(), "--version"], "unrecognized arguments: --version")
    fails_with(capsys, args(per_device_train_batch_size="0"), "--per_device_train_batch_size must be at least 1")
    fails_with(capsys, args(learning_rate="-1"), "--learning_rate must be >= 0, got -1.0")
    (workspace / "a_file").write_text("not a folder")
    fails_with(capsys, args("a_file"), "a_file is a file, not a folder")
    fails_with(capsys, args(model_name_or_path=str(workspace / "no_base")), "no_base is neither an existing folder")
    (workspace / "empty_checkpoint").mkdir()
    resume = str(workspace / "empty_checkpoint")
    fails_with(capsys, args(resume_from_checkpoint=resume), "is not a complete checkpoint (no adapter_model")
    fails_with(capsys, args("empty_checkpoint", do_train="false"), "empty_checkpoint holds none (no adapter_config")


def test_report_to_a_logger_that_is_not_installed(capsys, workspace, monkeypatch):
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "is_tensorboard_available", lambda: False)
    args = run_args(workspace, "o", train_dir=NOWHERE, report_to="tensorboard")
    fails_with(capsys, args, "--report_to tensorboard: not installed", "--report_to none")


@pytest.mark.parametrize(
    "flags",
    [
        {"target_modules": "layernorm_before"},
        {"target_modules": "embeddings"},
        {"target_modules": "vit"},
        {"placement": "parallel", "target_modules": "fc1"},  # reads 32 wide, would add 37 wide
    ],
    ids=["layernorm", "embeddings", "whole-backbone", "parallel-fc1"],
)
def test_an_adapter_that_does_not_fit_the_model_is_refused_before_any_data(capsys, workspace, flags):
    fails_with(capsys, run_args(workspace, "o", train_dir=NOWHERE, **flags), "The adapter does not fit vit")


def test_a_checkpoint_of_another_adapter_or_other_classes_is_refused(capsys, workspace, short_run):
    checkpoint = str(short_run / "checkpoint-1")
    args = run_args(workspace, "o", train_dir=NOWHERE, bottleneck_size="8", resume_from_checkpoint=checkpoint)
    fails_with(capsys, args, "holds another adapter (bottleneck_size 4 there, 8 here)")
    args = run_args(workspace, "o", train_dir=NOWHERE, placement="ffn", resume_from_checkpoint=checkpoint)
    fails_with(capsys, args, "placement 'houlsby' there, 'ffn' here")
    args = run_args(workspace, "o", train_dir=NOWHERE, adapter_drop_path="0.1", resume_from_checkpoint=checkpoint)
    fails_with(capsys, args, "holds another adapter (drop_path 0.0 there, 0.1 here)")
    other = make_image_folder(workspace / "other_classes", per_class=2, classes={"cat": (0, 0, 0), "dog": (9, 9, 9)})
    args = run_args(workspace, "o", train_dir=str(other), resume_from_checkpoint=checkpoint)
    fails_with(capsys, args, "was trained on other classes (3: blue, green, red...) than this dataset has (2)")


def test_train_val_split_that_leaves_nothing_to_train_on(capsys, workspace):
    args = run_args(workspace, "o", train_dir=str(workspace / "train"), train_val_split="0.999")
    fails_with(capsys, args, "--train_val_split 0.999 holds out 12 of the 12 training rows")


def test_one_class_is_refused_naming_column_and_split(capsys, workspace):
    images = [colour_image((220, 30, 30), seed) for seed in range(3)]
    features = Features({"image": Image(), "label": Value("string")})
    one = parquet_dataset(workspace / "one_class", {"image": images, "label": ["red"] * 3}, features)
    args = run_args(workspace, "o", dataset_name=str(one), train_val_split="0")
    fails_with(capsys, args, "Label column 'label' of split 'train' holds 1 class(es) ('red')", "at least two")


def test_unlabelled_rows_are_dropped_with_a_warning_per_split(caplog, workspace):
    features = Features({"image": Image(), "label": ClassLabel(names=["red", "blue"])})
    colours = {0: (220, 30, 30), 1: (30, 40, 220), -1: (0, 0, 0)}
    folder = workspace / "unlabelled"
    for split, labels in {"train": [0, 1, 0, 1, -1, 0, 1, -1], "validation": [0, 1, -1]}.items():
        images = [colour_image(colours[label], seed) for seed, label in enumerate(labels)]
        parquet_dataset(folder, {"image": images, "label": labels}, features, split=split)
    with caplog.at_level(logging.WARNING, logger="hf_vit_adapter"):
        metrics = train_run(run_args(workspace, "unlabelled_out", dataset_name=str(folder), max_steps="1"))
    assert "Dropped 2 of the 8 rows of split 'train'" in caplog.text
    assert "Dropped 1 of the 3 rows of split 'validation'" in caplog.text
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0


def test_a_diverging_run_stops_with_one_line_and_keeps_the_earlier_run(capsys, workspace, short_run):
    """--learning_rate 1e10 sends the loss to NaN; the earlier run's adapter must not be replaced by NaNs."""
    kept = workspace / "kept"
    shutil.copytree(short_run, kept)
    before = {path.name: path.read_bytes() for path in kept.iterdir() if path.is_file()}
    args = run_args(workspace, "kept", train_dir=str(workspace / "train"), learning_rate="1e10", max_steps="5")
    fails_with(capsys, [*args, "--overwrite_output_dir"], "training diverged", "lower --learning_rate", code=1)
    assert {path.name: path.read_bytes() for path in kept.iterdir() if path.is_file()} == before
