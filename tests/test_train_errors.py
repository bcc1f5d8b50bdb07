"""Bad input ends a run with one clear line on stderr and exit code 2, never a traceback; unreadable images are
skipped with a warning that names the file."""

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


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_errors")
    make_tiny_vit(root / "backbone")
    make_image_folder(root / "train", per_class=4)
    return root


def parquet_dataset(folder, columns: dict, features: Features):
    """A local dataset folder (`--dataset_name folder`) holding one parquet train split."""
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=features).to_parquet(str(folder / "train.parquet"))
    return folder


def fails_with(capsys, args: list[str], *fragments: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
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
    assert f"error: Cannot load dataset {workspace / 'no_such_folder'}" in result.stderr


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
