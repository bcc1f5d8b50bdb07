"""The pretraining room (`pretraining/`): the FractalDB-style generator, and the pretraining script on a tiny config,
run twice to check that it reproduces its weights bit for bit (the shipped backbone's run is too long for tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pretraining import fractals, pretrain  # noqa: E402

TINY = [
    "--num_categories", "3", "--train_instances", "8", "--eval_instances", "2", "--points", "300",
    "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--batch_size", "8",
    "--num_train_epochs", "2", "--threads", "1",
]  # fmt: skip
SPEC = fractals.FractalSpec()


def _filling_rate(maps: np.ndarray, probabilities: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images, _ = fractals.render(fractals.chaos_game(rng, maps, probabilities, SPEC.search_points), SPEC.search_size)
    return (images > 0).mean(axis=(1, 2))


def _search(seed: int, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    return fractals.search_categories(np.random.default_rng(seed), count, SPEC, batch=32)


@pytest.fixture(scope="module")
def categories() -> tuple[np.ndarray, np.ndarray]:
    return _search(0)


def test_categories_are_fractaldb_systems_that_pass_the_filling_rate(categories) -> None:
    maps, probabilities = categories
    np.testing.assert_array_equal(maps, _search(0)[0])
    assert not np.array_equal(maps, _search(1)[0])
    assert maps.shape == (4, fractals.MAX_MAPS, 6) and np.all(np.abs(maps) <= 1.0)
    used = probabilities > 0
    assert np.all((used.sum(axis=1) >= 2) & (used.sum(axis=1) <= fractals.MAX_MAPS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    # FractalDB: p_i = |det A_i| / sum_j |det A_j|
    determinant = np.abs(maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2]) * used
    np.testing.assert_allclose(probabilities, determinant / determinant.sum(axis=1, keepdims=True))
    # re-rendered with other chaos-game points, every kept system still fills about a fifth of the image
    assert np.all(_filling_rate(maps, probabilities, seed=7) >= 0.8 * SPEC.filling_rate)


def test_instances_vary_within_a_category_and_are_closer_to_it_than_to_others(categories) -> None:
    images, labels = fractals.render_instances(np.random.default_rng(0), *categories, 6, SPEC)
    assert images.shape == (24, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 6))
    assert len({image.tobytes() for image in images}) == 24  # no two instances alike
    assert images.max() == 255 and (images > 0).mean() > 0.05
    # each instance's nearest other image (pixels, flips undone by trying all four) is mostly of its own category
    flat = images.reshape(24, -1).astype(np.float64)
    flipped = [images, images[:, :, ::-1], images[:, ::-1, :], images[:, ::-1, ::-1]]
    distance = np.min([((flat[:, None] - f.reshape(24, -1)[None]) ** 2).sum(-1) for f in flipped], axis=0)
    np.fill_diagonal(distance, np.inf)
    assert (labels[distance.argmin(axis=1)] == labels).mean() >= 0.75


def _run(out: Path, *extra: str) -> dict:
    threads = torch.get_num_threads()
    try:
        return pretrain.main(["--output_dir", str(out), *TINY, *extra])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    _run(first)
    _run(second)
    return first, second


def test_rerun_reproduces_the_model_folder_bit_for_bit(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = two_runs
    for name in ("model.safetensors", "config.json", "preprocessor_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    records = [json.loads((run / "pretraining.json").read_text()) for run in two_runs]
    for record in records:
        record.pop("time")  # wall and CPU times, dates and load averages differ, and the output folders
        record.pop("command")
        record["arguments"].pop("output_dir")
    assert records[0] == records[1]
    other = _run(tmp_path / "other", "--seed", "1")
    assert other["model"]["model_safetensors_sha256"] != records[0]["model"]["model_safetensors_sha256"]


def test_model_folder_loads_and_its_readme_records_the_run(two_runs: tuple[Path, Path]) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    folder = two_runs[0]
    record = json.loads((folder / "pretraining.json").read_text())
    model = AutoModelForImageClassification.from_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)
    assert model.config.hidden_size == 32 and model.config.num_labels == 3 and model.config.patch_size == 4
    assert processor.size == {"height": 32, "width": 32}
    assert record["data"]["train_images"] == 3 * 8 and record["data"]["eval_images"] == 3 * 2
    assert record["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    readme = (folder / "README.md").read_text()
    assert record["command"] in readme and "--num_categories 3" in record["command"]
    assert f"**{record['metrics']['eval_accuracy']:.2%}**" in readme
    assert record["model"]["model_safetensors_sha256"] in readme
    assert "seed 0" in readme and f"{record['time']['training_wall_s']:.0f} s" in readme
