"""The benchmark room: `speed.py --quick` end to end, and `reproduce_seed.py` without a GPU or the Hub.

`--quick` runs a tiny ViT on the CPU, so only the structure and the arithmetic are checked here, not speed.
The seed recipes and their `all_results.json` are fakes written into a temporary folder: they stand in for the
examples and for finished training runs, which need a GPU and the Hub.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAD = 64 * 100 + 100  # the quick model's classification head: width 64, 100 classes
LAYERS, WIDTH = 2, 64  # the quick model's depth and width


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("speed")
    result = subprocess.run(
        [sys.executable, "benchmarks/speed.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Quick run: a tiny ViT and a few repeats, a smoke test" in result.stdout.strip().splitlines()[-1]
    return json.loads((out / "speed-quick.json").read_text()), out


def test_quick_runs_write_outside_the_committed_results() -> None:
    """`python benchmarks/speed.py --quick` as the README shows it must leave the checkout clean."""
    spec = importlib.util.spec_from_file_location("speed_cli", ROOT / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parse_args(["--quick"]).out == Path("benchmarks/results-quick")
    assert module.parse_args([]).out == Path("benchmarks/results")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/results-quick/speed-quick.json"], cwd=ROOT)
    assert ignored.returncode == 0


def _rows(results: dict, table: str) -> dict[str, dict]:
    return {row["method"]: row for row in results["architectures"][0][table]}


def test_quick_run_writes_json_markdown_and_png(quick_run: tuple[dict, Path]) -> None:
    results, out = quick_run
    assert (out / "speed-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "speed-quick.md").read_text()
    assert "| adapter houlsby b16 |" in markdown and "| LoRA r8 (q,v) |" in markdown
    assert results["settings"]["quick"] is True and results["machine"]["description"]
    assert "**A smoke test, not a measurement:**" in markdown
    assert [arch["key"] for arch in results["architectures"]] == ["tiny-vit"]


def test_adapter_parameters_match_an_independent_count(quick_run: tuple[dict, Path]) -> None:
    inference = _rows(quick_run[0], "inference")
    for r in (8, 16, 64):
        per_adapter = 2 * WIDTH * r + r + WIDTH  # down (d*r + r) and up (r*d + d)
        assert inference[f"adapter houlsby b{r}"]["trainable_params"] - HEAD == 2 * LAYERS * per_adapter
        for placement in ("ffn", "pfeiffer", "parallel"):
            assert inference[f"adapter {placement} b{r}"]["trainable_params"] - HEAD == LAYERS * per_adapter
    training = _rows(quick_run[0], "training")
    assert training["LoRA r8 (q,v)"]["trainable_params"] - HEAD == LAYERS * 2 * (2 * WIDTH * 8)  # A and B on q, v
    assert training["full fine-tuning"]["trainable_params"] == quick_run[0]["architectures"][0]["base_params"]


def test_ratios_are_sane(quick_run: tuple[dict, Path]) -> None:
    inference = _rows(quick_run[0], "inference")
    assert inference["base"]["ratio"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    for name, row in inference.items():
        assert row["latency_s"]["min"] <= row["latency_s"]["median"] <= row["latency_s"]["max"]
        if name != "base":
            assert row["flop_ratio"] > 1.0  # an adapter only adds work
            assert row["ratio"]["median"] > 0
    assert inference["adapter houlsby b64"]["flop_ratio"] > inference["adapter houlsby b8"]["flop_ratio"]
    training = _rows(quick_run[0], "training")
    full = training["full fine-tuning"]
    assert full["flop_ratio_to_full"] == 1.0 and full["peak_ratio_to_full"] == 1.0
    for name in ("adapter houlsby b8", "adapter houlsby b16", "LoRA r8 (q,v)"):
        row = training[name]
        # Frozen weights get no gradient matmuls: the backward is cheaper than full fine-tuning's.
        assert row["backward_to_forward_flops"] < full["backward_to_forward_flops"]
        assert row["flop_ratio_to_full"] < 1.0
        assert 0 < row["peak_bytes"] < full["peak_bytes"]
        assert row["step_s"]["median"] > 0


def _load_reproduce_seed():
    spec = importlib.util.spec_from_file_location("reproduce_seed", ROOT / "benchmarks" / "reproduce_seed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_recipes(tmp_path: Path) -> Path:
    """Twelve recipe files like examples/<dataset>_<backbone>.json, writing into tmp_path."""
    examples = tmp_path / "examples"
    examples.mkdir()
    datasets = ("cifar100", "cub200", "nabirds", "flowers102", "stanford_cars", "stanford_dogs")
    for dataset in datasets:
        for backbone, model in (
            ("vit_b16", "google/vit-base-patch16-224-in21k"),
            ("clip_l14", "openai/clip-vit-large-patch14"),
        ):
            name = f"{dataset}_{backbone}"
            recipe = {"model_name_or_path": model, "output_dir": str(tmp_path / "runs" / name), "num_train_epochs": 10}
            (examples / f"{name}.json").write_text(json.dumps(recipe))
    return examples


def test_reproduce_seed_dry_run_lists_commands(fake_recipes: Path, capsys: pytest.CaptureFixture) -> None:
    module = _load_reproduce_seed()
    result = module.main(["--examples", str(fake_recipes), "--dry-run", "--launcher", "hf-vit-adapter-train"])
    assert len(result["commands"]) == 12
    assert result["commands"][0] == f"hf-vit-adapter-train {fake_recipes / 'cifar100_vit_b16.json'}"
    assert result["estimated_s"] > 0 and "estimate" in capsys.readouterr().out
    only = module.main(["--examples", str(fake_recipes), "--dry-run", "--only", "dogs", "flowers"])
    assert len(only["commands"]) == 4
    assert not (fake_recipes.parent / "runs").exists()  # a dry run runs nothing


def test_reproduce_seed_table_puts_our_accuracy_beside_the_seed(fake_recipes: Path, tmp_path: Path) -> None:
    module = _load_reproduce_seed()
    for name, accuracy in (("cifar100_vit_b16", 0.9012), ("stanford_cars_clip_l14", 0.9411)):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "all_results.json").write_text(json.dumps({"eval_accuracy": accuracy, "eval_loss": 0.4}))
    out = tmp_path / "out"
    module.main(["--examples", str(fake_recipes), "--collect-only", "--out", str(out)])
    markdown = (out / "seed_reproduction.md").read_text()
    assert "| CIFAR-100 | 91.88 | 90.12 | -1.76 | 91.76 | — | — |" in markdown
    assert "| Stanford Cars | 80.98 | — | — | 93.11 | 94.11 | +1.00 |" in markdown
    assert "| Average | 88.32 | — | — | 90.46 | — | — |" in markdown  # no average over 1 of 6 datasets
    rows = json.loads((out / "seed_reproduction.json").read_text())
    assert len(rows) == 12 and sum(row["our_accuracy"] is not None for row in rows) == 2


def test_reproduce_seed_recognises_the_twelve_example_recipes() -> None:
    module = _load_reproduce_seed()
    if not list((ROOT / "examples").glob("*.json")):
        pytest.skip("examples/ has no recipes yet")
    recipes = module.find_recipes(ROOT / "examples")
    assert sorted((r.dataset, r.backbone) for r in recipes) == sorted(
        (dataset, backbone) for dataset in module.SEED_ACCURACY for backbone in module.BACKBONES
    )


# --- transfer.py: accuracy per trainable parameter on digits, from the shipped pretrained backbone ---------------


def _load_benchmark_module(name: str):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture(scope="module")
def transfer_quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    import torch

    transfer = _load_benchmark_module("transfer")
    out = tmp_path_factory.mktemp("transfer")
    import transformers

    threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    transfer.main(["--quick", "--workers", "1", "--out", str(out)])
    # run in this process, the benchmark leaves the process as it found it (later tests read transformers' warnings)
    assert (torch.get_num_threads(), transformers.logging.get_verbosity()) == (threads, verbosity)
    return json.loads((out / "transfer-quick.json").read_text()), out


def test_transfer_quick_writes_json_markdown_and_png_outside_the_results(transfer_quick: tuple[dict, Path]) -> None:

    results, out = transfer_quick
    assert (out / "transfer-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (ROOT / "benchmarks" / "results" / "transfer-quick.json").exists()
    markdown = (out / "transfer-quick.md").read_text()
    assert "### 10 labelled images per class" not in markdown  # --quick: 1 per class
    assert "### 1 labelled image per class" in markdown and "### all of the training split" in markdown
    assert "| adapter houlsby b8 |" in markdown and "| LoRA r8 (q,v) |" in markdown
    assert len(results["package"]["commit"]) == 40 and results["settings"]["quick"] is True
    assert results["machine"]["runs_cpu_s"] > 0
    rows = {(row["regime"], row["method"]): row for row in results["rows"]}
    names = {method for _, method in rows}
    assert names == {
        "linear probe",
        "full fine-tuning",
        "BitFit (biases + head)",
        "LoRA r8 (q,v)",
        "adapter houlsby b8",
        "Adapter+ b8",
        "adapter houlsby b32, random-init backbone",
    }
    assert "| Adapter+ b8 |" in markdown
    for row in results["rows"]:
        assert 0.0 <= row["test_accuracy"]["mean"] <= 1.0 and row["train_wall_s"]["mean"] > 0
        assert row["learning_rate"] in [float(rate) for rate in row["learning_rate_grid"]]


def test_transfer_trainable_parameters_match_an_independent_count(transfer_quick: tuple[dict, Path]) -> None:
    results, _ = transfer_quick
    arch = results["backbone"]["architecture"]
    d, layers = arch["hidden_size"], arch["num_hidden_layers"]
    head = 10 * d + 10
    rows = {row["method"]: row for row in results["rows"] if row["regime"] == "all"}
    assert rows["linear probe"]["trainable_params"] == head
    # BitFit: per block the q, k, v, output (4d), fc1 (4d), fc2 (d) and two layer-norm (2d) biases; plus the patch
    # embedding's and the final layer norm's
    assert rows["BitFit (biases + head)"]["trainable_params"] == layers * 11 * d + 2 * d + head
    assert rows["LoRA r8 (q,v)"]["trainable_params"] == layers * 2 * (2 * d * 8) + head
    per_adapter = lambda r: 2 * d * r + r + d  # noqa: E731
    assert rows["adapter houlsby b8"]["trainable_params"] == 2 * layers * per_adapter(8) + head
    # Adapter+: one adapter per block after the FFN, with a per-channel scale
    assert rows["Adapter+ b8"]["trainable_params"] == layers * (per_adapter(8) + d) + head
    assert rows["adapter houlsby b32, random-init backbone"]["trainable_params"] == 2 * layers * per_adapter(32) + head
    assert rows["full fine-tuning"]["trainable_params"] == results["base_params"]
    assert rows["full fine-tuning"]["trainable_pct"] == 100.0


class _FakeRunner:
    """Stands in for the training: validation accuracy is a fixed function of the learning rate and the seed."""

    def __init__(self, best: dict[str, float]):
        self.best, self.calls = best, []

    def map(self, runs):
        self.calls.append(list(runs))
        results = []
        for run in runs:
            score = 0.9 if run.learning_rate == self.best[run.method.kind] else 0.5
            results.append(
                {
                    "method": run.method.name, "regime": run.regime, "learning_rate": run.learning_rate,
                    "seed": run.seed, "validation_accuracy": score, "test_accuracy": score - 0.1 * run.seed,
                    "trainable_params": 7, "train_images": 3, "train_wall_s": 1.0 + run.seed, "train_cpu_s": 1.0,
                }
            )  # fmt: skip
        return results


def test_transfer_chooses_each_learning_rate_once_on_validation_and_runs_every_seed_of_every_regime_with_it() -> None:
    transfer = _load_benchmark_module("transfer")
    tuning = _load_benchmark_module("tuning")
    methods = [tuning.TuningMethod("linear"), tuning.TuningMethod("full"), tuning.TuningMethod("adapter_plus", size=8)]
    settings = transfer.Settings(epochs={"few": 1, "all": 1}, seeds=(0, 1, 2))
    runner = _FakeRunner({"linear": 1e-2, "full": 3e-4, "adapter_plus": 3e-2})
    rows = {(row["regime"], row["method"]): row for row in transfer.benchmark(methods, settings, runner)}
    search, repeats = runner.calls
    # the grid: seed 0 in the `all` regime only, three rates per method
    assert {(run.seed, run.regime) for run in search} == {(0, "all")} and len(search) == 3 * 3
    # then seeds 1, 2 in `all` (seed 0 is the grid's chosen run) and 0, 1, 2 in `few`, at the chosen rate
    assert sorted((run.regime, run.seed) for run in repeats if run.method == methods[0]) == [
        ("all", 1), ("all", 2), ("few", 0), ("few", 1), ("few", 2)
    ]  # fmt: skip
    assert len(repeats) == 3 * 5
    for regime in ("few", "all"):
        linear, full = rows[(regime, "linear probe")], rows[(regime, "full fine-tuning")]
        assert linear["learning_rate"] == 1e-2 and full["learning_rate"] == 3e-4
        assert list(linear["learning_rate_grid"]) == ["0.003", "0.01", "0.03"]
        assert list(full["learning_rate_grid"]) == ["0.0003", "0.001", "0.003"]
        assert [seed["seed"] for seed in linear["seeds"]] == [0, 1, 2]
        assert linear["test_accuracy"]["mean"] == pytest.approx(0.8)  # 0.9, 0.8, 0.7
        assert linear["test_accuracy"]["std"] == pytest.approx(0.1)  # sample standard deviation
        assert rows[(regime, "Adapter+ b8")]["learning_rate"] == 3e-2
    assert all(run.learning_rate in (1e-2, 3e-4, 3e-2) for run in repeats)
    random_init = tuning.TuningMethod("adapter", "houlsby", 32, random_init=True)
    assert random_init.learning_rates == (1e-3, 3e-3, 1e-2)


def test_transfer_compares_the_four_placements_unless_told_otherwise() -> None:
    transfer = _load_benchmark_module("transfer")
    assert transfer.parse_args([]).placements == ["houlsby", "ffn", "pfeiffer", "parallel"]
    assert transfer.parse_args(["--placements", "ffn", "parallel_ln"]).placements == ["ffn", "parallel_ln"]
    with pytest.raises(SystemExit):
        transfer.parse_args(["--placements", "sideways"])
