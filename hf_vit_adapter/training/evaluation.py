"""`compute_metrics` for `Trainer`: top-1 (and top-5) accuracy through the accuracy module shipped in the package."""

from __future__ import annotations

from collections.abc import Callable

import evaluate
import numpy as np
from transformers import EvalPrediction

from ..metrics import metric_path


def build_compute_metrics(num_labels: int) -> Callable[[EvalPrediction], dict[str, float]]:
    """Accuracy from the logits; top-5 too when there are at least 5 classes.

    The metric is loaded by path, so nothing is fetched from the Hub, and kept in memory, so processes of a
    data-parallel run do not share cache files.
    """
    metric = evaluate.load(metric_path("accuracy"), keep_in_memory=True)
    top_k = [5] if num_labels >= 5 else []

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric.compute(predictions=np.asarray(logits), references=prediction.label_ids, top_k=top_k)

    return compute_metrics
