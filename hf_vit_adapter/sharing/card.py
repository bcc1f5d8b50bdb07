"""The project's model card: what the adapter is, how well it did and how to load it, rendered from a template.

The template lives in the repo's top-level `model_cards/` (where people look for it) and ships inside the package as
`hf_vit_adapter/sharing/templates/` (so an installed package can render it); a test keeps the two identical.
"""

from __future__ import annotations

import json
import logging
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import get_token
from torch import nn

from ..config import AdapterConfig
from ..layer import AdapterLayer
from ..model import AdapterModel

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).parent / "templates" / "adapter_card.md"
TASK = "image-classification"

# How each placement changes a transformer block; `h` is the adapted module's output, `x` the stream or FFN input.
PLACEMENT_FORMULAS: dict[str, tuple[str, str]] = {
    "houlsby": (
        "after the attention output projection and after the FFN output projection of every block "
        "(two adapters per block, Houlsby et al. 2019)",
        "h ← h + s · up(act(down(h)))",
    ),
    "ffn": (
        "after the FFN output projection of every block (one adapter per block, as in the ModelScope adapter)",
        "h ← h + s · up(act(down(h)))",
    ),
    "pfeiffer": (
        "on the block output, after the FFN residual add (one adapter per block, Pfeiffer et al. 2021)",
        "x ← x + s · up(act(down(x)))",
    ),
    "parallel": (
        "beside the FFN, reading the block's stream before the FFN's LayerNorm (one adapter per block, "
        "AdaptFormer, He et al. 2022)",
        "x ← x + FFN(LN(x)) + s · up(act(down(x)))",
    ),
    "parallel_ln": (
        "beside the FFN, reading the FFN's input after its LayerNorm (one adapter per block; hf-vit-adapter "
        "0.1.0's `parallel`)",
        "FFN(x) ← FFN(x) + s · up(act(down(x)))",
    ),
}

# Trainer adds these to every evaluation; they describe the machine, not the model.
_MACHINE_METRICS = ("runtime", "samples_per_second", "steps_per_second")
_SPLITS = ("eval", "test", "train")
_METRIC_LABELS = {"accuracy": "top-1 accuracy", "top5_accuracy": "top-5 accuracy", "top_5_accuracy": "top-5 accuracy"}
_SECRET_KEYS = re.compile(r"token|secret|password|api_key|credential", re.IGNORECASE)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def write_model_card(
    output_dir: str | Path,
    *,
    model: nn.Module,
    base_model: str,
    dataset_name: str | None,
    metrics: dict,
    hyperparameters: dict,
    id2label: dict,
    license: str | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """Render the project's card for the active adapter of `model` (a `PeftModel`) and write `output_dir/README.md`.

    `metrics` uses Trainer's names (`eval_accuracy`, optional `eval_top5_accuracy`, ...). `model_name` names the
    model-index entry (default: the last part of `repo_id`, else the folder name); `repo_id` is what the usage
    snippets load (default: `model_name`). Keys that look like secrets (`hub_token`, ...) are left out of the card.
    """
    output_dir = Path(output_dir)
    config = _active_adapter_config(model)
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else output_dir.resolve().name)
    hub_base_model = _hub_id_or_none(base_model, "base_model")
    hub_dataset = _hub_id_or_none(dataset_name, "dataset_name") if dataset_name else None
    dataset_label = hub_dataset or (Path(dataset_name).name if dataset_name else None)
    labels = {int(index): str(label) for index, label in id2label.items()}
    results = _results(metrics)
    counts = parameter_counts(model)

    card_data = ModelCardData(
        library_name="peft",
        base_model=hub_base_model,
        pipeline_tag=TASK,
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=["accuracy"] if _find_metric(metrics, "accuracy") is not None else None,
        tags=["adapter", "bottleneck-adapter", config.placement, "vision", TASK, "peft", "hf-vit-adapter"],
        license=license,
        model_name=model_name,
        eval_results=_eval_results(metrics, hub_dataset, dataset_label) or None,
    )
    description, formula = PLACEMENT_FORMULAS[config.placement]
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id=repo_id or model_name,
        base_model=hub_base_model or Path(base_model).name,
        base_model_on_hub=hub_base_model is not None,
        dataset_name=dataset_label,
        dataset_on_hub=hub_dataset is not None,
        placement=config.placement,
        placement_description=description,
        formula=formula,
        bottleneck_size=config.bottleneck_size,
        non_linearity=config.non_linearity,
        scaling=describe_scaling(config.scaling),
        dropout=config.dropout,
        drop_path=config.drop_path,
        adapted_modules=counts["adapted_modules"],
        trainable_params=f"{counts['trainable']:,}",
        adapter_params=f"{counts['adapter']:,}",
        head_params=f"{counts['head']:,}",
        base_params=f"{counts['base']:,}",
        trainable_percent=f"{100 * counts['trainable'] / max(counts['base'], 1):.2f}%",
        hyperparameters=[(key, _format_value(value)) for key, value in _public(hyperparameters).items()],
        results=results,
        labels=[(index, _cell(labels[index])) for index in sorted(labels)],
        versions=_versions(),
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    card.save(output_dir / "README.md")
    return card


def describe_scaling(scaling: float | str) -> str:
    """The scaling `s` in words: a fixed number, or the trainable scale of `scaling="learned"` / `"channel"`."""
    if scaling == "learned":
        return "`s` a trainable scalar per adapter (initialised to 1)"
    if scaling == "channel":
        return "`s` a trainable per-channel vector (initialised to 1; Adapter+'s channel-wise scaling)"
    return f"`s = {scaling}`"


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of the active adapter (adapters, saved head) and of the frozen base, counted by name.

    Counting by name rather than `requires_grad` keeps the numbers right for a model loaded for inference.
    """
    name = _active_adapter_name(model)
    adapter = head = base = 0
    for param_name, parameter in model.named_parameters():
        if AdapterModel.prefix in param_name:
            adapter += parameter.numel() if f".{name}." in param_name else 0
        elif ".modules_to_save." in param_name:
            head += parameter.numel() if f".modules_to_save.{name}." in param_name else 0
        else:
            base += parameter.numel()
    adapted = sum(  # adapter sites: one bottleneck each
        name in getattr(module, attribute)
        for module in model.modules()
        if isinstance(module, AdapterLayer)
        for attribute in module.adapter_layer_names
    )
    return {"adapter": adapter, "head": head, "trainable": adapter + head, "base": base, "adapted_modules": adapted}


def _active_adapter_name(model: nn.Module) -> str:
    name = getattr(model, "active_adapter", None)
    if not isinstance(name, str):
        raise TypeError(f"Expected a PeftModel with one active adapter, got {type(model).__name__}.")
    return name


def _active_adapter_config(model: nn.Module) -> AdapterConfig:
    config = getattr(model, "peft_config", {}).get(_active_adapter_name(model))
    if not isinstance(config, AdapterConfig):
        raise TypeError(
            f"The active adapter of this model is a {type(config).__name__}, not a bottleneck AdapterConfig; "
            "this card describes hf_vit_adapter's bottleneck adapters only."
        )
    return config


def _hub_id_or_none(name: str, what: str = "base_model") -> str | None:
    """`name` when it is a Hub repo id; a local path must not reach the card (it is private and useless)."""
    if _HUB_ID.match(name) and not Path(name).exists():
        return name
    logger.warning("%s %r is not a Hub repo id; the card names it without linking it.", what, Path(name).name)
    return None


def _find_metric(metrics: dict, name: str) -> float | None:
    for key in (f"eval_{name}", f"test_{name}", name):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _top5(metrics: dict) -> float | None:
    for name in ("top5_accuracy", "top_5_accuracy", "accuracy_top5", "top5"):
        value = _find_metric(metrics, name)
        if value is not None:
            return value
    return None


def _eval_results(metrics: dict, hub_dataset: str | None, dataset_label: str | None) -> list[EvalResult]:
    dataset = {"dataset_type": hub_dataset or "imagefolder", "dataset_name": dataset_label or "local image folder"}
    found = [
        ("accuracy", "Top-1 Accuracy", _find_metric(metrics, "accuracy")),
        ("top_5_accuracy", "Top-5 Accuracy", _top5(metrics)),
    ]
    return [
        EvalResult(
            task_type=TASK,
            task_name="Image Classification",
            metric_type=kind,
            metric_name=name,
            metric_value=round(value, 6),
            **dataset,
        )
        for kind, name, value in found
        if value is not None
    ]


def _results(metrics: dict) -> list[tuple[str, str, str]]:
    """(split, metric, value) rows, evaluation first; Trainer's `eval_`/`test_`/`train_` prefixes become the split."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key.endswith(_MACHINE_METRICS):
            continue
        split, _, name = key.partition("_") if key.startswith(_SPLITS) else ("", "", key)
        if name == "flos" or key in ("total_flos", "epoch"):  # epochs are among the hyperparameters
            continue
        label = _METRIC_LABELS.get(name, name.replace("_", " "))
        rows.append((split, label, f"{value:.4f}" if isinstance(value, float) else str(value)))
    return sorted(rows, key=lambda row: _SPLITS.index(row[0]) if row[0] else len(_SPLITS))


def _public(hyperparameters: dict) -> dict[str, Any]:
    """Hyperparameters without anything that could be a credential."""
    token = get_token()
    return {
        key: value
        for key, value in hyperparameters.items()
        if not _SECRET_KEYS.search(str(key)) and not (token and token in str(value))
    }


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        value = json.dumps(value, default=str)
    return _cell(str(value))


def _cell(text: str) -> str:
    """Text that cannot break a markdown table row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _versions() -> list[tuple[str, str]]:
    versions = []
    for package in ("hf-vit-adapter", "peft", "transformers", "torch", "huggingface_hub"):
        try:
            versions.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            continue
    return versions
