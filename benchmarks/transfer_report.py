"""Writes a transfer benchmark run as JSON (everything), markdown (one table per regime) and PNG (accuracy against
trainable parameters, log x). `python benchmarks/transfer_report.py benchmarks/results/transfer.json` re-renders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

REGIMES = {"few": "10 labelled images per class", "all": "all of the training split"}


def regime_title(regime: str, settings: dict[str, Any]) -> str:
    if regime == "few":
        count = settings["few_labels_per_class"]
        return f"{count} labelled image{'s' if count != 1 else ''} per class"
    return REGIMES.get(regime, regime)


def _mean_std(value: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
    return f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}"


def _grid(row: dict[str, Any]) -> str:
    return ", ".join(
        f"**{float(rate):g}**: {100 * accuracy:.0f}"
        if float(rate) == row["learning_rate"]
        else f"{float(rate):g}: {100 * accuracy:.0f}"
        for rate, accuracy in row["learning_rate_grid"].items()
    )


def markdown(results: dict[str, Any]) -> str:
    settings, backbone, machine, package = (results[k] for k in ("settings", "backbone", "machine", "package"))
    seeds = len(settings["seeds"])
    dirty = " (with uncommitted changes)" if package["dirty"] else ""
    lines = [
        "## Transfer: digits on the formula-pretrained backbone",
        "",
        f"Command: `{settings['command']}`; package commit `{package['commit'][:12]}`{dirty}; {settings['date']}.  ",
        f"Backbone: `{backbone['path']}` ({backbone['architecture']['hidden_size']} wide, "
        f"{backbone['architecture']['num_hidden_layers']} blocks, {backbone['architecture']['image_size']} px, patch "
        f"{backbone['architecture']['patch_size']}); with a 10-way head it has {results['base_params']:,} parameters, "
        "the 100% of the % column.  ",
        f"Data: scikit-learn digits upscaled to {backbone['architecture']['image_size']} px; fixed test split of "
        f"{settings['splits']['test']} images, validation split of {settings['splits']['validation']} and training "
        f"pool of {settings['splits']['pool']}.  ",
        f"Every run: `Trainer`, AdamW, batch {settings['batch_size']}, {settings['scheduler']} schedule with "
        f"{settings['warmup']} warm-up, weight decay {settings['weight_decay']}, no augmentation; epochs: "
        + ", ".join(f"{settings['epochs'][r]} ({regime_title(r, settings)})" for r in settings["epochs"])
        + ".  ",
        "Learning rate: one per method, chosen by validation accuracy after training on "
        f"{regime_title(settings['tuning_regime'], settings)} with seed {settings['seeds'][0]} (the grid is the last "
        f"column), then used in both regimes with {seeds} seeds; test accuracy is the mean ± standard deviation over "
        f"the {seeds} seeds.  ",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, {settings['workers']} worker process(es) of one "
        f"torch thread; load average {machine['load_average_start']:.2f} at start, "
        f"{machine['load_average_end']:.2f} at end; whole run {machine['wall_s'] / 60:.1f} min"
        + (f", {machine['runs_cpu_s'] / 60:.1f} min of CPU time in the runs." if "runs_cpu_s" in machine else "."),
    ]
    for regime in settings["epochs"]:
        rows = [row for row in results["rows"] if row["regime"] == regime]
        lines += [
            "",
            f"### {regime_title(regime, settings)}",
            "",
            "| method | trainable params | % of backbone | test accuracy % | train time s | train CPU time s "
            "| learning rate: validation accuracy % |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            lines.append(
                f"| {row['method']} | {row['trainable_params']:,} | {row['trainable_pct']:.2f} | "
                f"{_mean_std(row['test_accuracy'], 100)} | {_mean_std(row['train_wall_s'])} | "
                f"{_mean_std(row['train_cpu_s'])} | {_grid(row)} |"
            )
    lines += [
        "",
        "Train time: wall clock and CPU time of `trainer.train()` in a single-thread worker process, mean ± std over "
        "the seeds (evaluation not included). In the learning-rate column the chosen rate is in bold.",
    ]
    return "\n".join(lines) + "\n"


MARKERS = {None: "o", "houlsby": "s", "ffn": "^", "pfeiffer": "v", "parallel": "D"}
# placements with the same parameter count would sit on top of each other: nudge them apart on the log axis
NUDGE = {"ffn": 0.93, "pfeiffer": 1.0, "parallel": 1.075}


def chart(results: dict[str, Any], path: Path) -> None:
    """Test accuracy (mean ± std over seeds) against trainable parameters, one panel per regime, one legend."""
    settings = results["settings"]
    regimes = list(settings["epochs"])
    figure, axes = plt.subplots(1, len(regimes), figsize=(6.5 * len(regimes) + 3.5, 5.5), squeeze=False)
    names = list(dict.fromkeys(row["method"] for row in results["rows"]))
    colours = {name: plt.get_cmap("tab20")(index % 20) for index, name in enumerate(names)}
    for axis, regime in zip(axes[0], regimes, strict=True):
        for row in results["rows"]:
            if row["regime"] != regime:
                continue
            axis.errorbar(
                row["trainable_params"] * NUDGE.get(row["placement"], 1.0),
                100 * row["test_accuracy"]["mean"],
                yerr=100 * row["test_accuracy"]["std"],
                fmt="x" if row["random_init"] else MARKERS.get(row["placement"], "o"),
                color=colours[row["method"]],
                capsize=3,
                label=row["method"],
            )
        axis.set_xscale("log")
        axis.set_xlabel("trainable parameters (log scale)")
        axis.set_ylabel(f"test accuracy % (mean ± std, {len(settings['seeds'])} seeds)")
        axis.set_title(f"digits, {regime_title(regime, settings)}")
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=8)
    figure.suptitle("Transfer from the formula-pretrained tiny ViT: accuracy per trainable parameter")
    figure.tight_layout(rect=(0, 0, 1 - 3.3 / figure.get_figwidth(), 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """Write `<stem>.json`, `<stem>.md` and `<stem>.png` into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {suffix: out_dir / f"{stem}.{suffix}" for suffix in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["md"].write_text(markdown(results))
    chart(results, paths["png"])
    return paths


if __name__ == "__main__":
    source = Path(sys.argv[1])
    write(json.loads(source.read_text()), source.parent, source.stem)
