"""Train a bottleneck adapter on an image classification dataset with the Hugging Face `Trainer`.

    python -m hf_vit_adapter.train --model_name_or_path google/vit-base-patch16-224-in21k \
        --dataset_name uoft-cs/cifar100 --output_dir out --bottleneck_size 10 --placement ffn
    hf-vit-adapter-train examples/cifar100_vit-b16.json

The flow is that of transformers' `run_image_classification.py`: parse -> logging -> dataset -> labels -> model and
image processor -> transforms -> Trainer -> train -> evaluate -> save metrics -> model card / push. `--output_dir`
receives only the adapter (`save_pretrained`), the image processor, the metrics and the model card.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import Trainer, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import get_last_checkpoint

from .training.arguments import AdapterArguments, DataTrainingArguments, ModelArguments, parse_args
from .training.columns import ensure_class_labels, find_columns
from .training.dataset import load_image_dataset, select_splits
from .training.errors import InputError
from .training.evaluation import build_compute_metrics
from .training.images import drop_unreadable_images
from .training.modeling import add_adapter, load_backbone, load_image_processor
from .training.transforms import batch_transform, collate, eval_preprocessing, image_geometry, train_augmentation

PROG = "hf-vit-adapter-train"
logger = logging.getLogger(__name__)


def main(args: list[str] | None = None) -> dict[str, float]:
    """Console entry point. Bad input ends the run with a one-line error and exit code 2, not a traceback."""
    try:
        return train(*parse_args(args))
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def train(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    adapter_args: AdapterArguments,
    training_args: TrainingArguments,
) -> dict[str, float]:
    """Run training and evaluation as configured; return the metrics also written to `all_results.json`."""
    setup_logging(training_args)
    push_to_hub, hub_token = hold_back_hub_push(training_args)
    checkpoint = resolve_checkpoint(training_args)

    # Dataset, columns and labels. The main process goes first so the others reuse its cache files.
    with training_args.main_process_first(desc="dataset loading"):
        dataset = load_image_dataset(data_args, model_args.cache_dir, model_args.token)
        image_column, label_column = find_columns(dataset, data_args.image_column_name, data_args.label_column_name)
        dataset, labels = ensure_class_labels(dataset, label_column)
        train_split, eval_split = select_splits(dataset, data_args, training_args.seed)
        if training_args.do_train:
            train_split = usable_images(train_split, image_column, "train", data_args)
        if training_args.do_eval:
            if eval_split is None:
                raise InputError("No split to evaluate on: pass --eval_split_name or --train_val_split > 0.")
            eval_split = usable_images(eval_split, image_column, "evaluation", data_args)
    id2label = dict(enumerate(labels))

    # Backbone with a fresh head, its image processor, and the adapter.
    image_processor = load_image_processor(model_args)
    model = add_adapter(load_backbone(model_args, id2label), adapter_args)
    if training_args.should_log:
        model.print_trainable_parameters()

    geometry = image_geometry(image_processor)
    columns = [image_column, label_column]
    if training_args.do_train:
        augmentation = train_augmentation(geometry, data_args.min_crop_scale, data_args.horizontal_flip)
        train_split.set_transform(batch_transform(augmentation, *columns), columns=columns)
    if training_args.do_eval:
        eval_split.set_transform(batch_transform(eval_preprocessing(geometry), *columns), columns=columns)

    trainer = AdapterTrainer(
        model=model,
        args=training_args,
        train_dataset=train_split if training_args.do_train else None,
        eval_dataset=eval_split if training_args.do_eval else None,
        compute_metrics=build_compute_metrics(len(labels)),
        processing_class=image_processor,
        data_collator=collate,
    )

    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()  # the adapter and head (PeftModel.save_pretrained) and the image processor
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if trainer.is_world_process_zero():
        share(trainer, model_args, data_args, adapter_args, training_args, metrics, id2label, push_to_hub, hub_token)
    return metrics


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger("hf_vit_adapter").setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, "
        f"device: {training_args.device}, 16-bits training: {training_args.fp16 or training_args.bf16}"
    )
    logger.info(f"Training/evaluation parameters {training_args}")


class AdapterTrainer(Trainer):
    """`Trainer` that leaves no pickle behind: its arguments go to `training_args.json`, not `training_args.bin`."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        pickled = Path(output_dir) / TRAINING_ARGS_NAME
        if self.args.should_save and pickled.exists():
            pickled.unlink()
            # `to_json_string` masks every `*_token` value.
            (Path(output_dir) / "training_args.json").write_text(self.args.to_json_string())


def hold_back_hub_push(training_args: TrainingArguments) -> tuple[bool, str | None]:
    """Turn off `Trainer`'s own push (it would upload its card and checkpoints); we push the adapter at the end.

    The token is taken out of the arguments too, so nothing that `Trainer` saves or logs can hold it.
    """
    push_to_hub, hub_token = training_args.push_to_hub, training_args.hub_token
    training_args.push_to_hub = False
    training_args.hub_token = None
    if push_to_hub and not training_args.hub_model_id:
        training_args.hub_model_id = Path(training_args.output_dir).resolve().name
    return push_to_hub, hub_token


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint PATH`, or `true` / `last` for the newest `checkpoint-*` in `--output_dir`."""
    requested = training_args.resume_from_checkpoint
    output_dir = training_args.output_dir
    if not training_args.do_train:
        return None
    if requested is None:
        if os.path.isdir(output_dir) and get_last_checkpoint(output_dir) is not None:
            logger.warning(
                f"{output_dir} holds checkpoints; training starts from scratch. Pass --resume_from_checkpoint true "
                "to continue from the newest one."
            )
        return None
    if requested.lower() in ("true", "last", "latest"):
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            raise InputError(f"--resume_from_checkpoint {requested}: no checkpoint-* folder in {output_dir}.")
        return last
    if not os.path.isdir(requested):
        raise InputError(f"--resume_from_checkpoint {requested} is not a folder.")
    return requested


def usable_images(split: datasets.Dataset, image_column: str, name: str, data_args: DataTrainingArguments):
    """`split` without its unreadable images; no images at all is an error."""
    if len(split) == 0:
        raise InputError(f"The {name} split has no images.")
    split, dropped = drop_unreadable_images(split, image_column, name, data_args.preprocessing_num_workers)
    if len(split) == 0:
        raise InputError(f"None of the {len(dropped)} images of the {name} split can be read, e.g. {dropped[0]}.")
    return split


def share(
    trainer: Trainer,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    adapter_args: AdapterArguments,
    training_args: TrainingArguments,
    metrics: dict[str, float],
    id2label: dict[int, str],
    push_to_hub: bool,
    hub_token: str | None,
) -> None:
    """Write the model card next to the adapter and, when asked, push the folder to the Hub (main process only)."""
    from .sharing import push_adapter_to_hub, write_model_card

    output_dir = training_args.output_dir
    write_model_card(
        output_dir,
        model=trainer.model,
        base_model=model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        metrics=metrics,
        hyperparameters=hyperparameters(adapter_args, training_args),
        id2label=id2label,
        license=model_args.license,
        repo_id=training_args.hub_model_id if push_to_hub else None,
    )
    if push_to_hub:
        url = push_adapter_to_hub(
            output_dir,
            training_args.hub_model_id,
            private=training_args.hub_private_repo,
            token=hub_token,
        )
        logger.info(f"Pushed the adapter to {url}")


def hyperparameters(adapter_args: AdapterArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """The settings that shaped the adapter, for the model card."""
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    return {
        "bottleneck_size": adapter_args.bottleneck_size,
        "placement": adapter_args.placement,
        "non_linearity": adapter_args.non_linearity,
        "scaling": adapter_args.scaling,
        "adapter_dropout": adapter_args.adapter_dropout,
        "learning_rate": training_args.learning_rate,
        "train_batch_size": training_args.per_device_train_batch_size,
        "total_train_batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size,
        "num_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "optimizer": _plain(training_args.optim),
        "lr_scheduler_type": _plain(training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "mixed_precision": precision,
        "seed": training_args.seed,
    }


def _plain(value: Any) -> Any:
    """The value of an enum setting (`OptimizerNames.ADAMW_TORCH` -> `"adamw_torch"`), other values as they are."""
    return getattr(value, "value", value)


if __name__ == "__main__":
    main()
