"""Evaluate metric modules shipped with the package, so metrics load offline by path (no Hub download)."""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).parent


def metric_path(name: str) -> str:
    """Path to the shipped metric script `name`, for `evaluate.load(metric_path("accuracy"))`."""
    path = METRICS_DIR / name / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"No metric {name!r} ships with hf_vit_adapter (looked for {path}).")
    return str(path)
