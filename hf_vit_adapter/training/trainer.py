"""`Trainer` for adapters: no pickles, the run's true training loss across resumes, and a stop when training diverges.

Two callbacks ride along:
- `TrainingLossRecord` sums the training loss over every optimizer step and travels in each checkpoint's
  `trainer_state.json`, so a resumed run reports the mean over the whole run (Trainer's own `train_loss` covers only
  the steps of one `train()` call: 0.0 after resuming a finished run). It sees each step's raw loss, before Trainer's
  `logging_nan_inf_filter` hides a NaN, and stops the run before anything is saved once the loss is not finite.
- `AugmentationEpoch` tells the training set which epoch begins, for its per-sample seeded augmentation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_callback import ExportableState

from ..sites import SCALE_PARAMETER_NAME
from .errors import TrainingDiverged


class TrainingLossRecord(TrainerCallback, ExportableState):
    """The training loss summed over the optimizer steps of the whole run, saved with every checkpoint."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.steps = 0  # optimizer steps whose loss is in `loss_sum`: the run's last `steps` steps
        self.start_step = 0  # the global step this `train()` call started from
        self._pending: torch.Tensor | None = None  # summed on the device; read only when logging or saving

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self._pending = loss if self._pending is None else self._pending + loss

    def mean(self) -> float | None:
        self._flush(None, None)
        return self.loss_sum / self.steps if self.steps else None

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"loss_sum": self.loss_sum, "steps": self.steps}}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__) if state.global_step else None
        attributes = saved.get("attributes", {}) if isinstance(saved, dict) else {}
        self.loss_sum, self.steps = float(attributes.get("loss_sum", 0.0)), int(attributes.get("steps", 0))
        self.start_step, self._pending = state.global_step, None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.steps += 1
        if control.should_log or control.should_save or state.global_step >= state.max_steps:
            self._flush(args, state)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._flush(args, state)  # an epoch-end save comes next

    def _flush(self, args: TrainingArguments | None, state: TrainerState | None) -> None:
        if self._pending is None:
            return
        value, self._pending = float(self._pending.item()), None
        if not math.isfinite(value):
            where = f" by step {state.global_step}" if state is not None else ""
            rate = f" (now {args.learning_rate:g})" if args is not None else ""
            raise TrainingDiverged(
                f"The training loss became {value}{where}: training diverged. Nothing of this run was saved as "
                f"its result; lower --learning_rate{rate} or check the data."
            )
        self.loss_sum += value


class AugmentationEpoch(TrainerCallback):
    """Passes the epoch that begins to a dataset with `set_epoch` (Trainer only tells the sampler)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


class AdapterTrainer(Trainer):
    """`Trainer` that records the run's loss (`loss_record`), stops on divergence, keeps learned adapter scales out
    of weight decay, and leaves no pickle behind: its arguments go to `training_args.json`, not `training_args.bin`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_record = TrainingLossRecord()
        self.add_callback(self.loss_record)
        if hasattr(self.train_dataset, "set_epoch"):
            self.add_callback(AugmentationEpoch(self.train_dataset))

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """Trainer's (no decay for biases and LayerNorm weights), without the learned adapter scales: as in
        Adapter+, a scale that decays towards 0 would switch its adapter off."""
        return [
            name
            for name in super().get_decay_parameter_names(model)
            if name.rsplit(".", 1)[-1] != SCALE_PARAMETER_NAME
        ]

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.loss_record.add(loss)
        return loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        pickled = Path(output_dir) / TRAINING_ARGS_NAME
        if self.args.should_save and pickled.exists():
            pickled.unlink()
            # `to_json_string` masks every `*_token` value.
            (Path(output_dir) / "training_args.json").write_text(self.args.to_json_string())


def non_finite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the trainable parameters that hold a NaN or an infinity."""
    return [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and not torch.isfinite(parameter).all()
    ]


def check_finite_weights(model: torch.nn.Module, learning_rate: float) -> None:
    """The last guard before a trained adapter is saved and carded: its weights must be numbers."""
    diverged = non_finite_parameters(model)
    if diverged:
        raise TrainingDiverged(
            f"{len(diverged)} trained tensors hold NaN or infinite values (e.g. {diverged[0]}): training diverged. "
            f"Nothing of this run was saved as its result; lower --learning_rate (now {learning_rate:g})."
        )
