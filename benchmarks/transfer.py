"""Transfer benchmark: how much accuracy each way of tuning buys per trainable parameter, on real images, offline.

    python benchmarks/transfer.py            # the full run (about 30 minutes on 2 CPU cores)
    python benchmarks/transfer.py --quick    # a smoke test: a few images, one seed, one epoch (CI)

The backbone is the package's formula-pretrained ViT (`hf_vit_adapter.PRETRAINED_BACKBONE`); the task is
scikit-learn's handwritten digits (`benchmarks/digits.py`) in two regimes: `few` (10 labelled images per class,
drawn from the training pool with each seed) and `all` (the whole training pool). Each method's learning rate is
chosen once, from a small grid, by validation accuracy in the `all` regime with seed 0, and used in both regimes
with seeds 0, 1 and 2. Every run has the same epochs, batch size, schedule and weight decay, through `Trainer`. Test
accuracy is reported as mean ± standard deviation over the seeds; the test split chooses nothing.
Writes `<out>/transfer[-quick].{json,md,png}`, by default into `benchmarks/results/` (`--quick`: the git-ignored
`benchmarks/results-quick/`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/transfer.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    TrainingArguments,
    ViTConfig,
)

from benchmarks import transfer_report  # noqa: E402
from benchmarks.digits import DigitSplits, digit_splits  # noqa: E402
from benchmarks.models import count_parameters  # noqa: E402
from benchmarks.tuning import TuningMethod, transfer_methods  # noqa: E402
from hf_vit_adapter import PLACEMENTS, PRETRAINED_BACKBONE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
FEW_LABELS_PER_CLASS = 10
BOTTLENECKS = (8, 32)
# the four placements the table compares; `--placements ... parallel_ln` adds the post-LayerNorm parallel variant
DEFAULT_PLACEMENTS = ("houlsby", "ffn", "pfeiffer", "parallel")


@dataclass(frozen=True)
class Settings:
    """What every run shares; a regime sets its own epochs."""

    epochs: dict[str, int]
    batch_size: int = 32
    weight_decay: float = 1e-4
    warmup: float = 0.1
    scheduler: str = "cosine"
    few_labels_per_class: int = FEW_LABELS_PER_CLASS
    seeds: tuple[int, ...] = SEEDS
    limit_per_class: int | None = None  # quick runs only: the first images of each class
    grid_points: int | None = None  # quick runs only: the first learning rates of each grid
    tuning_regime: str = "all"  # where each method's learning rate is chosen, for every regime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A smoke test for CI: seconds, not minutes.")
    parser.add_argument("--out", type=Path, default=None, help="Output folder (default benchmarks/results).")
    parser.add_argument("--workers", type=int, default=2, help="Runs in parallel, one process and thread each.")
    parser.add_argument("--backbone", default=PRETRAINED_BACKBONE, help="The pretrained model folder.")
    parser.add_argument(
        "--placements",
        nargs="+",
        choices=PLACEMENTS,
        default=list(DEFAULT_PLACEMENTS),
        help="Adapter placements to compare, each at bottleneck 8 and 32 (default: %(default)s).",
    )
    args = parser.parse_args(argv)
    if args.out is None:  # a smoke test never replaces the committed results
        args.out = ROOT / "benchmarks" / ("results-quick" if args.quick else "results")
    return args


def settings_for(quick: bool) -> Settings:
    if quick:
        return Settings(
            epochs={"few": 1, "all": 1}, seeds=(0,), few_labels_per_class=1, limit_per_class=5, grid_points=1
        )
    return Settings(epochs={"few": 20, "all": 2})


@dataclass(frozen=True)
class Run:
    """One training run: a method, a regime, a learning rate and a seed."""

    method: TuningMethod
    regime: str
    learning_rate: float
    seed: int


def build_model(method: TuningMethod, backbone: str, seed: int) -> torch.nn.Module:
    """The backbone with a fresh, seeded 10-way head (or a random-init copy of it), tuned by `method`."""
    transformers.set_seed(seed)
    labels = {"num_labels": 10, "id2label": {i: str(i) for i in range(10)}, "label2id": {str(i): i for i in range(10)}}
    if method.random_init:
        config = ViTConfig.from_pretrained(backbone, **labels)
        model = AutoModelForImageClassification.from_config(config)
    else:
        model = AutoModelForImageClassification.from_pretrained(backbone, ignore_mismatched_sizes=True, **labels)
    return method.apply(model)


def training_arguments(run: Run, settings: Settings, output_dir: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir,
        seed=run.seed,
        use_cpu=True,
        learning_rate=run.learning_rate,
        num_train_epochs=settings.epochs[run.regime],
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=256,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.scheduler,
        warmup_steps=settings.warmup,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def train_indices(splits: DigitSplits, regime: str, seed: int, settings: Settings):
    return splits.few_labels(settings.few_labels_per_class, seed) if regime == "few" else splits.pool


def execute(run: Run, settings: Settings, splits: DigitSplits, backbone: str) -> dict[str, Any]:
    """Train one run with `Trainer`; return its validation and test accuracy and its training time."""
    run_cpu = time.process_time()
    model = build_model(run.method, backbone, run.seed)
    trainable, _ = count_parameters(model)
    train = splits.dataset(train_indices(splits, run.regime, run.seed, settings))
    with tempfile.TemporaryDirectory(prefix="transfer-") as output_dir:
        trainer = Trainer(model=model, args=training_arguments(run, settings, output_dir), train_dataset=train)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        accuracy = {}
        for split in ("validation", "test"):
            prediction = trainer.predict(splits.dataset(getattr(splits, split)))
            accuracy[split] = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    return {
        "method": run.method.name,
        "regime": run.regime,
        "learning_rate": run.learning_rate,
        "seed": run.seed,
        "validation_accuracy": accuracy["validation"],
        "test_accuracy": accuracy["test"],
        "trainable_params": trainable,
        "train_images": len(train),
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "run_cpu_s": time.process_time() - run_cpu,  # with model loading and evaluation
    }


_WORKER: dict[str, Any] = {}


def _start_worker(settings: Settings, backbone: str) -> None:
    """Each worker process: one torch thread, quiet logs, the digits loaded once."""
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("peft").setLevel(logging.ERROR)
    processor = AutoImageProcessor.from_pretrained(backbone)
    _WORKER.update(settings=settings, backbone=backbone, splits=digit_splits(processor, settings.limit_per_class))


def _execute_in_worker(run: Run) -> dict[str, Any]:
    return execute(run, _WORKER["settings"], _WORKER["splits"], _WORKER["backbone"])


class Runner:
    """Runs batches of runs: in this process (`workers=1`) or in a pool of single-thread processes."""

    def __init__(self, settings: Settings, backbone: str, workers: int):
        self.pool = None
        self.cpu_s = 0.0  # CPU time of all runs, in whichever process they ran
        if workers > 1:
            self.pool = ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(settings, backbone)
            )
        else:  # in this process: what the worker set-up changes is put back by `close`
            self._saved = (
                torch.get_num_threads(),
                transformers.logging.get_verbosity(),
                logging.getLogger("peft").level,
            )
            _start_worker(settings, backbone)

    def map(self, runs: list[Run]) -> list[dict[str, Any]]:
        if self.pool is None:
            results = [_execute_in_worker(run) for run in runs]
        else:
            results = list(self.pool.map(_execute_in_worker, runs))
        self.cpu_s += sum(result["run_cpu_s"] for result in results)
        return results

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            return
        threads, verbosity, peft_level = self._saved
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)
        logging.getLogger("peft").setLevel(peft_level)


def benchmark(methods: list[TuningMethod], settings: Settings, runner: Runner) -> list[dict[str, Any]]:
    """Grid search with seed 0 in the tuning regime, then every seed of every regime with the chosen learning rate.

    One rate per method, chosen where the validation split is small next to the training images (`all`): in the
    `few` regime a validation split as large as the training set would be a luxury no few-label user has, and both
    regimes take about the same number of steps on the same schedule. One row per method and regime.
    """
    regimes = list(settings.epochs)
    tuning, first = settings.tuning_regime, settings.seeds[0]
    search = [
        Run(method, tuning, rate, first)
        for method in methods
        for rate in method.learning_rates[: settings.grid_points]
    ]
    search_results = runner.map(search)
    chosen: dict[TuningMethod, dict[str, Any]] = {}
    for run, result in zip(search, search_results, strict=True):
        best = chosen.get(run.method)
        # ties go to the first (smallest) learning rate of the grid
        if best is None or result["validation_accuracy"] > best["validation_accuracy"]:
            chosen[run.method] = result
    repeats = [
        Run(method, regime, chosen[method]["learning_rate"], seed)
        for regime in regimes
        for method in methods
        for seed in settings.seeds
        if (regime, seed) != (tuning, first)  # that run is the grid's chosen one
    ]
    repeat_results = runner.map(repeats)
    rows = []
    for regime in regimes:
        for method in methods:
            grid = [r for run, r in zip(search, search_results, strict=True) if run.method == method]
            seeds = [chosen[method]] if regime == tuning else []
            seeds += [
                r
                for run, r in zip(repeats, repeat_results, strict=True)
                if (run.method, run.regime) == (method, regime)
            ]
            rows.append(summarise(method, regime, grid, seeds))
    return rows


def method_fields(method: TuningMethod) -> dict[str, Any]:
    return {"kind": method.kind, "placement": method.placement, "size": method.size, "random_init": method.random_init}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(method: TuningMethod, regime: str, grid: list[dict], seeds: list[dict]) -> dict[str, Any]:
    return {
        "method": method.name,
        "regime": regime,
        **method_fields(method),
        "learning_rate_grid": {str(r["learning_rate"]): r["validation_accuracy"] for r in grid},
        "learning_rate": seeds[0]["learning_rate"],
        "trainable_params": seeds[0]["trainable_params"],
        "train_images": [r["train_images"] for r in seeds],
        "test_accuracy": _mean_std([r["test_accuracy"] for r in seeds]),
        "validation_accuracy": _mean_std([r["validation_accuracy"] for r in seeds]),
        "train_wall_s": _mean_std([r["train_wall_s"] for r in seeds]),
        "train_cpu_s": _mean_std([r["train_cpu_s"] for r in seeds]),
        "seeds": [{k: r[k] for k in ("seed", "test_accuracy", "validation_accuracy", "train_wall_s")} for r in seeds],
    }


def package_commit() -> dict[str, Any]:
    """The commit of the code that ran, and whether the working tree had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def backbone_info(backbone: str) -> dict[str, Any]:
    folder = Path(backbone)
    model = AutoModelForImageClassification.from_pretrained(folder)
    _, total = count_parameters(model)
    record_path = folder / "pretraining.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    return {
        "path": str(folder.relative_to(ROOT)) if folder.resolve().is_relative_to(ROOT) else str(folder),
        "parameters_with_pretraining_head": total,
        "model_safetensors_sha256": hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest(),
        "pretraining_eval_accuracy": record.get("metrics", {}).get("eval_accuracy"),
        "architecture": {
            k: getattr(model.config, k) for k in ("image_size", "patch_size", "hidden_size", "num_hidden_layers")
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    settings = settings_for(args.quick)
    command = " ".join(["python", "benchmarks/transfer.py", *(argv if argv is not None else sys.argv[1:])])
    # --quick: one adapter instead of eight, so every kind of method still runs
    placements, bottlenecks = (("houlsby",), (8,)) if args.quick else (tuple(args.placements), BOTTLENECKS)
    methods = transfer_methods(placements, bottlenecks)
    processor = AutoImageProcessor.from_pretrained(args.backbone)
    splits = digit_splits(processor, settings.limit_per_class)
    backbone = backbone_info(str(args.backbone))
    # % of the backbone: of the 10-way model before tuning (the pretrained weights plus the new head)
    base_params = count_parameters(build_model(TuningMethod("full"), str(args.backbone), 0))[1]
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()[0]
    wall = time.perf_counter()
    runner = Runner(settings, str(args.backbone), args.workers)
    try:
        rows = benchmark(methods, settings, runner)
    finally:
        runner.close()
    for row in rows:
        row["trainable_pct"] = 100 * row["trainable_params"] / base_params
    results = {
        "settings": {
            "command": command,
            "quick": args.quick,
            **asdict(settings),
            "learning_rate_grids": {m.name: list(m.learning_rates) for m in methods},
            "workers": args.workers,
            "torch_threads_per_worker": 1,
            "splits": {
                "test": len(splits.test),
                "validation": len(splits.validation),
                "pool": len(splits.pool),
                "split_seed": 0,
            },
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        },
        "package": package_commit(),
        "backbone": backbone,
        "base_params": base_params,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg()[0],
            "wall_s": time.perf_counter() - wall,
            "runs_cpu_s": runner.cpu_s,
        },
        "software": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "rows": rows,
    }
    paths = transfer_report.write(results, args.out, "transfer-quick" if args.quick else "transfer")
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(path) for path in paths.values()))
    return paths


if __name__ == "__main__":
    main()
