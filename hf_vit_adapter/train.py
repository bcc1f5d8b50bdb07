"""Train a bottleneck adapter on an image classification dataset with the Hugging Face `Trainer`.

    python -m hf_vit_adapter.train --model_name_or_path google/vit-base-patch16-224-in21k \
        --dataset_name uoft-cs/cifar100 --output_dir out --bottleneck_size 10 --placement ffn
    hf-vit-adapter-train examples/cifar100_vit-b16-in21k.json --output_dir out --bf16 false

The flow is that of transformers' `run_image_classification.py`: parse -> logging -> checks -> dataset -> labels ->
model and image processor -> transforms -> Trainer -> train -> evaluate -> save -> model card / push. Everything that
can be checked without the data or the weights (flags, output folder, checkpoint, that the adapter fits the model,
Hub access) is checked first. `--output_dir` receives only the adapter (`save_pretrained`), the image processor, the
metrics and the model card, all swapped in at once when the run ends (see `training/outputs.py`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import transformers
from transformers import TrainingArguments, enable_full_determinism, set_seed

from .config import AdapterConfig
from .stochastic_depth import add_backbone_drop_path
from .training.arguments import PROG, AdapterArguments, DataTrainingArguments, ModelArguments, parse_args
from .training.checkpoints import check_checkpoint_labels, check_checkpoint_matches, resolve_checkpoint
from .training.columns import (
    check_training_classes,
    drop_unlabelled,
    ensure_class_labels,
    find_columns,
    relabel_to,
)
from .training.dataset import load_image_dataset, select_splits
from .training.errors import InputError, TrainingDiverged
from .training.evaluation import build_compute_metrics
from .training.images import drop_unreadable_images
from .training.modeling import (
    add_adapter,
    check_adapter_fits,
    is_local,
    load_backbone,
    load_image_processor,
    load_model_config,
    load_trained_adapter,
    read_adapter_config,
    resolve_base,
)
from .training.outputs import (
    RUN_FILES,
    check_output_dir,
    publish,
    remove_earlier_checkpoints,
    stage,
    staging_folder,
)
from .training.trainer import AdapterTrainer, check_finite_weights
from .training.transforms import (
    SeededAugmentation,
    batch_transform,
    collate,
    eval_preprocessing,
    image_geometry,
    train_augmentation,
)

if TYPE_CHECKING:
    from .sharing.preflight import PushTarget

logger = logging.getLogger(__name__)

DEFAULT_BASE = "google/vit-base-patch16-224-in21k"
# Trainer's speed figures; they mean nothing for a call that trained no step.
_SPEED_METRICS = ("train_runtime", "train_samples_per_second", "train_steps_per_second")


def main(args: list[str] | None = None) -> None:
    """Console entry point: exit code 0 on success; bad input is one line and exit code 2, a run that diverged one
    line and exit code 1, never a traceback."""
    try:
        train(*parse_args(args))
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingDiverged as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def train(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    adapter_args: AdapterArguments,
    training_args: TrainingArguments,
) -> dict[str, float]:
    """Run training and evaluation as configured; return the metrics also written to `all_results.json`."""
    setup_logging(training_args)
    push_to_hub, hub_token = hold_back_hub_push(training_args)
    output_dir = training_args.output_dir

    # Checks before the long work: nothing here reads the data or the model's weights.
    checkpoint, trained_adapter, adapter_source = None, None, None
    if training_args.do_train:
        checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
        continues = checkpoint is not None and checkpoint.resolve().parent == Path(output_dir).resolve()
        check_output_dir(output_dir, overwrite=training_args.overwrite_output_dir, resuming=continues)
        model_args.model_name_or_path = resolve_base(model_args.model_name_or_path or DEFAULT_BASE)
        image_processor = load_image_processor(model_args)
        settings = check_adapter_fits(
            load_model_config(model_args), adapter_args, image_geometry(image_processor), model_args.backbone_drop_path
        )
        if checkpoint is not None:
            check_checkpoint_matches(checkpoint, settings)
    else:
        adapter_source = model_args.adapter_name_or_path or output_dir
        trained_adapter = read_adapter_config(adapter_source, model_args)
        base = model_args.model_name_or_path or trained_adapter.base_model_name_or_path
        if base is None:
            raise InputError(f"The adapter {adapter_source} records no base model; pass --model_name_or_path.")
        model_args.model_name_or_path = resolve_base(base)
        image_processor = evaluation_image_processor(model_args, adapter_source)
    push_target = check_push(model_args, training_args, hub_token, adapter_source) if push_to_hub else None

    # Dataset, columns and labels. The main process goes first so the others reuse its cache files.
    with training_args.main_process_first(desc="dataset loading"):
        dataset = load_image_dataset(data_args, model_args.cache_dir, model_args.token)
        image_column, label_column = find_columns(dataset, data_args.image_column_name, data_args.label_column_name)
        dataset = drop_unlabelled(dataset, label_column)
        dataset, labels = ensure_class_labels(dataset, label_column)
        if checkpoint is not None:
            check_checkpoint_labels(checkpoint, dict(enumerate(labels)))
        train_split, eval_split = select_splits(dataset, data_args, training_args.seed, label_column)
        if training_args.do_train:
            check_training_classes(train_split, label_column, labels, data_args.train_split_name)
            train_split = usable_images(train_split, image_column, "train", data_args)
        if training_args.do_eval:
            if eval_split is None:
                raise InputError("No split to evaluate on: pass --eval_split_name or --train_val_split > 0.")
            if trained_adapter is not None:
                eval_split, labels = relabel_to(eval_split, label_column, labels, trained_adapter.id2label or {})
            eval_split = usable_images(eval_split, image_column, "evaluation", data_args)
    id2label = dict(enumerate(labels))

    # The model: a backbone with a fresh head and the adapter, both drawn from --seed; or the trained adapter.
    if training_args.full_determinism:
        enable_full_determinism(training_args.seed)
    else:
        set_seed(training_args.seed)
    if training_args.do_train:
        model = add_adapter(load_backbone(model_args, id2label), adapter_args, model_args.base_model_id)
        if model_args.backbone_drop_path > 0:
            add_backbone_drop_path(model, model_args.backbone_drop_path)
    else:
        model = load_trained_adapter(adapter_source, trained_adapter, model_args)
    if training_args.should_log:
        model.print_trainable_parameters()

    geometry = image_geometry(image_processor)
    columns = [image_column, label_column]
    if training_args.do_train:
        augmentation = train_augmentation(geometry, data_args.min_crop_scale, data_args.horizontal_flip)
        train_split = SeededAugmentation(train_split, augmentation, *columns, seed=training_args.seed)
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
        if training_args.overwrite_output_dir and checkpoint is None and trainer.is_world_process_zero():
            remove_earlier_checkpoints(output_dir)
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
        check_finite_weights(model, training_args.learning_rate)
        train_metrics = run_train_metrics(result.metrics, trainer, checkpoint)
        trainer.log_metrics("train", train_metrics)
        metrics.update(train_metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        if not training_args.do_train:
            eval_metrics.pop("epoch", None)  # Trainer's 0: the epochs are the training run's figure
        trainer.log_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if training_args.do_train:
        save_run(trainer, model_args, data_args, adapter_args, training_args, metrics, id2label, push_target)
    elif trainer.is_world_process_zero():
        save_evaluation(output_dir, adapter_source, metrics)
    if push_target is not None and trainer.is_world_process_zero():
        push(output_dir, push_target, training_args, hub_token)
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
    if training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False  # pinned memory only helps copies to an accelerator
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, "
        f"device: {training_args.device}, 16-bits training: {training_args.fp16 or training_args.bf16}"
    )
    logger.info(f"Training/evaluation parameters {training_args}")


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


def check_push(
    model_args: ModelArguments, training_args: TrainingArguments, hub_token: str | None, adapter_source: str | None
) -> PushTarget:
    """Everything a push at the end needs, checked now: a base others can download, a token, a writable repo."""
    from .sharing.preflight import check_push_access

    if training_args.do_train and is_local(model_args.model_name_or_path) and model_args.base_model_id is None:
        raise InputError(
            f"--push_to_hub with a local --model_name_or_path ({model_args.model_name_or_path}) would upload an "
            "adapter nobody else can load: pass --base_model_id org/name, the Hub id of that base."
        )
    if adapter_source is not None and Path(adapter_source).resolve() != Path(training_args.output_dir).resolve():
        raise InputError("--push_to_hub with --do_train false pushes the adapter in --output_dir; evaluate it there.")
    try:
        return check_push_access(
            training_args.hub_model_id, token=hub_token, private=training_args.hub_private_repo or None
        )
    except ValueError as error:
        raise InputError(str(error)) from None


def evaluation_image_processor(model_args: ModelArguments, adapter_source: str):
    """The image processor saved with the adapter (as training left it), else the base model's."""
    try:
        return load_image_processor(model_args, name=model_args.image_processor_name or adapter_source)
    except InputError:
        return load_image_processor(model_args)


def usable_images(split: datasets.Dataset, image_column: str, name: str, data_args: DataTrainingArguments):
    """`split` without its unreadable images; no images at all is an error."""
    if len(split) == 0:
        raise InputError(f"The {name} split has no images.")
    split, dropped = drop_unreadable_images(split, image_column, name, data_args.preprocessing_num_workers)
    if len(split) == 0:
        raise InputError(f"None of the {len(dropped)} images of the {name} split can be read, e.g. {dropped[0]}.")
    return split


def run_train_metrics(metrics: dict[str, float], trainer: AdapterTrainer, checkpoint: Path | None) -> dict[str, float]:
    """Trainer's train metrics, with `train_loss` the mean over the whole run rather than over this call's steps."""
    metrics = dict(metrics)
    record, step = trainer.loss_record, trainer.state.global_step
    mean = record.mean()
    if mean is None:
        metrics.pop("train_loss", None)
    else:
        metrics["train_loss"] = mean
    if checkpoint is not None and record.steps < step:
        covered = f"the last {record.steps}" if record.steps else "none"
        logger.warning(f"train_loss covers {covered} of the {step} steps: {checkpoint} has no record of the rest.")
    if checkpoint is not None and record.start_step == step:
        for name in _SPEED_METRICS:
            metrics.pop(name, None)
        logger.warning(
            f"Nothing left to train: {checkpoint} had reached step {step} of {trainer.state.max_steps}. "
            "The results report that run."
        )
    return metrics


def save_run(
    trainer: AdapterTrainer,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    adapter_args: AdapterArguments,
    training_args: TrainingArguments,
    metrics: dict[str, float],
    id2label: dict[int, str],
    push_target: PushTarget | None,
) -> None:
    """Write the adapter, image processor, trainer state, results and card into a staging folder beside
    `--output_dir`, then swap them in at once (every process calls this; the main one writes)."""
    from .sharing import write_model_card

    output_dir = training_args.output_dir
    staging = stage(output_dir) if trainer.is_world_process_zero() else staging_folder(output_dir)
    trainer.save_model(str(staging))  # every process: sharded models gather their weights here
    if not trainer.is_world_process_zero():
        return
    trainer.state.save_to_json(str(staging / "trainer_state.json"))
    write_results(staging, metrics)
    write_model_card(
        staging,
        model=trainer.model,
        base_model=model_args.base_model_id or model_args.model_name_or_path,
        dataset_name=data_args.dataset_name,
        metrics=metrics,
        hyperparameters=hyperparameters(trainer.model.peft_config["default"], adapter_args, model_args, training_args),
        id2label=id2label,
        license=model_args.license,
        model_name=Path(output_dir).resolve().name,
        repo_id=push_target.repo_id if push_target is not None else None,
    )
    publish(output_dir, staging, replaced=RUN_FILES)


def save_evaluation(output_dir: str, adapter_source: str, metrics: dict[str, float]) -> None:
    """Write an evaluation-only run's results beside what is there. The card is left as the training run wrote it;
    the train figures of the adapter's own folder stay in `all_results.json`."""
    earlier: dict[str, Any] = {}
    if Path(adapter_source).resolve() == Path(output_dir).resolve():
        path = Path(output_dir) / "all_results.json"
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        earlier = {key: value for key, value in earlier.items() if not key.startswith("eval_")}
    staging = stage(output_dir)
    write_results(staging, {**earlier, **metrics}, splits=("eval",))
    publish(output_dir, staging, replaced=("eval_results.json", "all_results.json"))


def write_results(folder: Path, metrics: dict[str, float], splits: tuple[str, ...] = ("train", "eval")) -> None:
    """`train_results.json`, `eval_results.json` and `all_results.json`, as `Trainer.save_metrics` writes them."""
    for split in splits:
        part = {key: value for key, value in metrics.items() if key.startswith(f"{split}_") or key == "epoch"}
        if any(key != "epoch" for key in part):
            _write_json(folder / f"{split}_results.json", part)
    _write_json(folder / "all_results.json", metrics)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def push(output_dir: str, target: PushTarget, training_args: TrainingArguments, hub_token: str | None) -> None:
    from .sharing import push_adapter_to_hub

    push_adapter_to_hub(output_dir, target.repo_id, private=training_args.hub_private_repo, token=hub_token)
    print(f"Pushed the adapter to {target.url}")


def hyperparameters(
    adapter_config: AdapterConfig,
    adapter_args: AdapterArguments,
    model_args: ModelArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """The settings that shaped the adapter, for the model card: the adapter's as the run built it (a preset's values
    and the flags given on top), and the training settings."""
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    return {
        "adapter_preset": adapter_args.adapter_preset or "none",
        "bottleneck_size": adapter_config.bottleneck_size,
        "placement": adapter_config.placement,
        "non_linearity": adapter_config.non_linearity,
        "scaling": adapter_config.scaling,
        "adapter_dropout": adapter_config.dropout,
        "adapter_drop_path": adapter_config.drop_path,
        "init_weights": adapter_config.init_weights,
        "backbone_drop_path": model_args.backbone_drop_path,
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
