"""The ways to tune a backbone that the transfer benchmark compares, each turning a loaded model into a trainable one.

Adapters go through `get_peft_model(model, AdapterConfig(...))` and LoRA through PEFT's `LoraConfig`
(`benchmarks.models.apply_method`, shared with `speed.py`), so the benchmark runs the package's real code. Every
method trains the new classification head.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft import get_peft_model
from torch import nn
from transformers import PreTrainedModel

from benchmarks import models
from hf_vit_adapter import AdapterConfig

# The grids. In a first full run with 1e-3..1e-2 (full fine-tuning 1e-4..1e-3) almost every method chose the top
# rate on validation, so both grids moved one step up; the random-init backbone chose 1e-3 and 3e-3 there and keeps
# that grid.
HEAD_LEARNING_RATES = (3e-3, 1e-2, 3e-2)  # everything that freezes the backbone
FULL_LEARNING_RATES = (3e-4, 1e-3, 3e-3)  # full fine-tuning: every weight moves, so smaller steps
RANDOM_INIT_LEARNING_RATES = (1e-3, 3e-3, 1e-2)
ADAPTER_PLUS_BOTTLENECK = 8  # the paper's default


@dataclass(frozen=True)
class TuningMethod:
    """`kind`: linear (head only), full, bitfit (biases + head), lora, adapter or adapter_plus."""

    kind: str
    placement: str | None = None  # adapters
    size: int | None = None  # adapter bottleneck, LoRA rank
    random_init: bool = False  # train on a randomly initialised backbone of the same architecture

    @property
    def name(self) -> str:
        names = {
            "linear": "linear probe",
            "full": "full fine-tuning",
            "bitfit": "BitFit (biases + head)",
            "lora": f"LoRA r{self.size} (q,v)",
            "adapter": f"adapter {self.placement} b{self.size}",
            "adapter_plus": f"Adapter+ b{self.size}",
        }
        return names[self.kind] + (", random-init backbone" if self.random_init else "")

    @property
    def learning_rates(self) -> tuple[float, ...]:
        if self.random_init:
            return RANDOM_INIT_LEARNING_RATES
        return FULL_LEARNING_RATES if self.kind == "full" else HEAD_LEARNING_RATES

    def apply(self, model: PreTrainedModel) -> nn.Module:
        """Freeze what the method freezes and insert what it inserts; the head always trains."""
        if self.kind == "linear":
            return _train_only(model, lambda name: name.startswith(models.HEAD_NAME))
        if self.kind == "bitfit":
            return _train_only(model, lambda name: name.startswith(models.HEAD_NAME) or name.endswith(".bias"))
        if self.kind == "adapter_plus":
            return get_peft_model(model, AdapterConfig.adapter_plus(bottleneck_size=self.size))
        method = {"full": models.FULL, "lora": models.lora(self.size)}.get(self.kind)
        method = method or models.adapter(self.placement, self.size)
        return models.apply_method(model, None, method)


def _train_only(model: PreTrainedModel, trainable) -> PreTrainedModel:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable(name))
    return model


def transfer_methods(placements: tuple[str, ...], bottlenecks: tuple[int, ...]) -> list[TuningMethod]:
    """The benchmark's rows, in the order of the table."""
    adapters = [TuningMethod("adapter", placement, size) for placement in placements for size in bottlenecks]
    return [
        TuningMethod("linear"),
        TuningMethod("full"),
        TuningMethod("bitfit"),
        TuningMethod("lora", size=8),
        *adapters,
        TuningMethod("adapter_plus", "pfeiffer", ADAPTER_PLUS_BOTTLENECK),
        TuningMethod("adapter", "houlsby", 32, random_init=True),
    ]
