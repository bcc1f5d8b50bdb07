"""Top-1 and top-k accuracy as an `evaluate` module.

`evaluate.load("accuracy")` downloads its script from the Hub; this one ships inside hf_vit_adapter so training runs
offline. It takes either predicted class ids (like the Hub's `accuracy`) or one score vector per example, from which
it also reports top-k accuracy.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy is the fraction of examples whose predicted class is the reference class. Given class scores (logits or
probabilities) instead of class ids, the prediction is the arg-max, and top-k accuracy counts an example as correct
when the reference is among its k highest scores. Top-k is only reported when there are at least k classes.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]` or `list[list[float]]`): predicted class ids, or one score vector per example.
    references (`list[int]`): reference class ids.
    top_k (`list[int]`, optional): the k of the top-k accuracies to report with score vectors. Defaults to `[5]`.
Returns:
    accuracy (`float`): top-1 accuracy, in [0, 1].
    top{k}_accuracy (`float`): top-k accuracy for each k up to the number of classes, with score vectors only.
Examples:
    >>> metric = evaluate.load("hf_vit_adapter/metrics/accuracy")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1])
    {'accuracy': 0.5}
"""

_CITATION = ""

_INT = datasets.Value("int64")


class Accuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")), "references": _INT}),
                datasets.Features({"predictions": _INT, "references": _INT}),
            ],
        )

    def _compute(self, predictions, references, top_k: list[int] | None = None) -> dict[str, float]:
        references = np.asarray(references, dtype=np.int64)
        predictions = np.asarray(predictions)
        if predictions.ndim == 1:
            return {"accuracy": float(np.mean(predictions.astype(np.int64) == references))}
        # Ranks of the classes by descending score; ties keep the lower class id first.
        ranking = np.argsort(-predictions, axis=1, kind="stable")
        results = {"accuracy": float(np.mean(ranking[:, 0] == references))}
        num_classes = predictions.shape[1]
        for k in top_k if top_k is not None else [5]:
            if 1 < k <= num_classes:
                results[f"top{k}_accuracy"] = float(np.mean(np.any(ranking[:, :k] == references[:, None], axis=1)))
        return results
