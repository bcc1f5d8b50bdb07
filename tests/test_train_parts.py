"""The training room's parts on their own: argument parsing and recipes, columns and labels, splits, RGB conversion,
transforms against the image processor, the shipped accuracy metric, and CLIP checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage
from train_helpers import REPO_ROOT, colour_image
from transformers import CLIPImageProcessor, ViTImageProcessor

from hf_vit_adapter import AdapterConfig
from hf_vit_adapter.metrics import metric_path
from hf_vit_adapter.training.arguments import (
    DataTrainingArguments,
    cli_defaults,
    make_parser,
    parse_args,
    read_config_file,
)
from hf_vit_adapter.training.columns import (
    check_training_classes,
    drop_unlabelled,
    ensure_class_labels,
    find_columns,
    relabel_to,
)
from hf_vit_adapter.training.dataset import select_splits
from hf_vit_adapter.training.errors import InputError
from hf_vit_adapter.training.images import to_rgb
from hf_vit_adapter.training.transforms import eval_preprocessing, image_geometry, pil_to_tensor, train_augmentation

RECIPES = sorted((REPO_ROOT / "examples").glob("*.json"))
ADAPTER_PLUS_RECIPES = [recipe for recipe in RECIPES if recipe.stem.startswith("adapter-plus_")]
SEED_RECIPES = [recipe for recipe in RECIPES if recipe not in ADAPTER_PLUS_RECIPES]
# Adapter+'s per-dataset bottlenecks (visinf/adapter_plus, conf/experiment/fgvc/adapter_plus_dim1-32.yaml); CIFAR-100
# is not among its FGVC sets: the preset's default 8 (see examples/README.md).
ADAPTER_PLUS_BOTTLENECKS = {
    "cifar100": 8,
    "cub200": 2,
    "nabirds": 2,
    "oxford-flowers102": 1,
    "stanford-cars": 32,
    "stanford-dogs": 1,
}
HUB_DATASETS = {  # ../shared/REFERENCE.md
    "cifar100": ("uoft-cs/cifar100", "img", "fine_label"),
    "cub200": ("bentrevett/caltech-ucsd-birds-200-2011", "image", "label"),
    "oxford-flowers102": ("dpdl-benchmark/oxford_flowers102", "image", "label"),
    "stanford-cars": ("tanganke/stanford_cars", "image", "label"),
    "stanford-dogs": ("amaye15/stanford-dogs", "image", "label"),
}
BACKBONES = {"vit-b16-in21k": "google/vit-base-patch16-224-in21k", "clip-vit-l14": "openai/clip-vit-large-patch14"}


def parse_on_cpu(config_file: Path):
    """Parse a GPU recipe (bf16) as the CLI does, adding only `use_cpu`, which this machine needs for bf16."""
    return make_parser().parse_dict({**cli_defaults(), **read_config_file(str(config_file)), "use_cpu": True})


def test_twelve_recipes_parse_with_the_cli_parser():
    assert len(SEED_RECIPES) == 12
    for recipe in SEED_RECIPES:
        dataset, backbone = recipe.stem.split("_")
        model_args, data_args, adapter_args, training_args = parse_on_cpu(recipe)
        assert model_args.model_name_or_path == BACKBONES[backbone]
        if dataset == "nabirds":
            assert data_args.dataset_name is None and data_args.train_dir and data_args.validation_dir
        else:
            columns = (data_args.dataset_name, data_args.image_column_name, data_args.label_column_name)
            assert columns == HUB_DATASETS[dataset]
        assert adapter_args.to_adapter_config().bottleneck_size == 10
        assert training_args.do_train and training_args.do_eval and training_args.bf16
        assert training_args.output_dir.endswith(recipe.stem)


def test_adapter_plus_recipes_parse_to_the_papers_recipe():
    """Adapter+ (Steitz & Roth 2024) on the seed's datasets with ViT-B/16 IN21k: the preset with the dataset's
    bottleneck, backbone drop-path 0.1, AdamW lr 1e-3, weight decay 1e-4, batch 64, 100 epochs, 10 of them warm-up,
    cosine down to lr/1000, no gradient clipping."""
    from transformers import get_scheduler

    assert sorted(recipe.stem.split("_")[1] for recipe in ADAPTER_PLUS_RECIPES) == sorted(ADAPTER_PLUS_BOTTLENECKS)
    for recipe in ADAPTER_PLUS_RECIPES:
        _, dataset, backbone = recipe.stem.split("_")
        model_args, data_args, adapter_args, training_args = parse_on_cpu(recipe)
        seed_recipe = read_config_file(str(recipe.with_name(f"{dataset}_{backbone}.json")))
        assert model_args.model_name_or_path == BACKBONES[backbone] == "google/vit-base-patch16-224-in21k"
        for key in ("dataset_name", "image_column_name", "label_column_name", "eval_split_name", "train_dir"):
            assert getattr(data_args, key) == seed_recipe.get(key)  # the same data as the seed recipe
        config = adapter_args.to_adapter_config()
        expected = AdapterConfig.adapter_plus(bottleneck_size=ADAPTER_PLUS_BOTTLENECKS[dataset])
        assert config.to_dict() == expected.to_dict() and config.scaling == "channel" and config.drop_path == 0.1
        assert model_args.backbone_drop_path == 0.1
        args = training_args
        assert (args.learning_rate, args.weight_decay, args.per_device_train_batch_size) == (1e-3, 1e-4, 64)
        assert (args.num_train_epochs, args.gradient_accumulation_steps, args.max_grad_norm) == (100, 1, 0.0)
        assert args.bf16 and args.do_train and args.do_eval and args.output_dir.endswith(recipe.stem)
        # The schedule, on a run of 1000 steps: linear warm-up over 100 (10 of 100 epochs), cosine to lr/1000.
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
        scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=args.get_warmup_steps(1000),
            num_training_steps=1000,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )
        rates = []
        for _ in range(1001):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert rates[0] == 0.0 and rates[50] == pytest.approx(5e-4) and rates[100] == pytest.approx(1e-3)
        assert rates[550] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2) and rates[1000] == pytest.approx(1e-6)


def test_a_yaml_config_and_command_line_flags_give_the_same_arguments(tmp_path: Path):
    recipe = json.loads(SEED_RECIPES[0].read_text())
    yaml_file = tmp_path / "recipe.yaml"
    yaml_file.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in recipe.items()))
    flags = [item for key, value in recipe.items() for item in (f"--{key}", *map(str, np.atleast_1d(value)))]
    from_yaml, from_flags = parse_on_cpu(yaml_file), make_parser().parse_args_into_dataclasses([*flags, "--use_cpu"])
    assert from_yaml[:3] == from_flags[:3]
    assert from_yaml[3].learning_rate == from_flags[3].learning_rate and from_yaml[3].bf16 == from_flags[3].bf16


def test_flags_after_a_config_file_override_it(tmp_path: Path):
    """How users adapt a recipe: the file first, then the flags that differ, typed as flags always are."""
    recipe_file = str(REPO_ROOT / "examples" / "cifar100_vit-b16-in21k.json")
    args = [recipe_file, "--output_dir", str(tmp_path / "x"), "--bf16", "false", "--per_device_train_batch_size"]
    model_args, data_args, adapter_args, training_args = parse_args([*args, "16", "--use_cpu"])
    recipe = json.loads(Path(recipe_file).read_text())
    assert training_args.output_dir == str(tmp_path / "x") and training_args.bf16 is False and training_args.use_cpu
    assert training_args.per_device_train_batch_size == 16
    assert training_args.learning_rate == recipe["learning_rate"] and adapter_args.bottleneck_size == 10
    assert (
        data_args.dataset_name == recipe["dataset_name"]
        and model_args.model_name_or_path == BACKBONES["vit-b16-in21k"]
    )
    with pytest.raises(InputError, match="unrecognized arguments: --version"):
        parse_args([recipe_file, "--version"])
    with pytest.raises(InputError, match="argument --bottleneck_size/--bottleneck-size: invalid int value: 'x'"):
        parse_args([recipe_file, "--bottleneck_size", "x"])


def test_cli_defaults_train_evaluate_and_log_to_tensorboard():
    _, _, _, training_args = parse_args(["--train_dir", "x", "--output_dir", "o"])
    assert training_args.do_train and training_args.do_eval and not training_args.remove_unused_columns
    assert training_args.report_to == ["tensorboard"]  # tensorboard is a test dependency


def dataset_dict(**columns) -> DatasetDict:
    return DatasetDict({"train": Dataset.from_dict(columns)})


def test_columns_are_found_by_name_or_type_and_missing_ones_are_listed():
    images = [colour_image((0, 0, 0), 0)] * 2
    by_name = dataset_dict(img=images, fine_label=[0, 1], coarse_label=[0, 0])
    assert find_columns(by_name, None, None) == ("img", "fine_label")
    typed = DatasetDict(
        {"train": Dataset.from_dict({"x": images, "y": [0, 1]}, Features({"x": Image(), "y": ClassLabel(2)}))}
    )
    assert find_columns(typed, None, None) == ("x", "y")
    with pytest.raises(InputError, match=r"columns are \['img', 'fine_label', 'coarse_label'\]"):
        find_columns(by_name, "pixels", None)


def test_labels_become_class_labels():
    strings, names = ensure_class_labels(dataset_dict(label=["b", "a", "b"]), "label")
    assert names == ["a", "b"] and strings["train"]["label"] == [1, 0, 1]
    ints, names = ensure_class_labels(dataset_dict(label=[2, 0, 1]), "label")
    assert names == ["0", "1", "2"] and isinstance(ints["train"].features["label"], ClassLabel)
    with pytest.raises(InputError, match="not categorical"):
        ensure_class_labels(dataset_dict(label=[0.5, 1.0]), "label")
    with pytest.raises(InputError, match="not categorical"):
        ensure_class_labels(dataset_dict(label=[-1, 1]), "label")


def test_unlabelled_rows_go_and_classes_without_training_images_are_named(caplog):
    strings = drop_unlabelled(dataset_dict(label=["b", None, "a", None]), "label")
    assert strings["train"]["label"] == ["b", "a"] and "Dropped 2 of the 4 rows of split 'train'" in caplog.text
    sparse, names = ensure_class_labels(dataset_dict(label=[0, 5, 0, 5]), "label")
    check_training_classes(sparse["train"], "label", names, "train")
    assert (
        "4 of the 6 classes have no training images in split 'train', so the head cannot learn them: 1, 2, 3, 4"
        in (caplog.text)
    )


def test_an_evaluation_set_is_numbered_as_the_adapters_classes():
    split, names = ensure_class_labels(dataset_dict(label=["dog", "cat", "dog"]), "label")  # cat 0, dog 1
    relabelled, adapter_names = relabel_to(split["train"], "label", names, {0: "dog", 1: "bird", 2: "cat"})
    assert adapter_names == ["dog", "bird", "cat"] and relabelled["label"] == [0, 2, 0]
    with pytest.raises(InputError, match="classes the adapter was not trained on: cat .it knows 1: dog."):
        relabel_to(split["train"], "label", names, {0: "dog"})


def test_the_validation_split_is_stratified_by_label():
    """Four images of each of three classes, a quarter held out: one of each class, whatever the seed."""
    labelled = Dataset.from_dict({"label": [0, 1, 2] * 4}, Features({"label": ClassLabel(names=["a", "b", "c"])}))
    for seed in range(5):
        train, evaluation = select_splits(
            DatasetDict({"train": labelled}),
            DataTrainingArguments(dataset_name="d", train_val_split=0.25),
            seed,
            "label",
        )
        assert sorted(evaluation["label"]) == [0, 1, 2] and sorted(train["label"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_validation_is_carved_from_train_and_samples_are_capped():
    dataset = dataset_dict(label=list(range(100)))
    train, evaluation = select_splits(dataset, DataTrainingArguments(dataset_name="d", train_val_split=0.2), 0)
    assert (len(train), len(evaluation)) == (80, 20) and not set(train["label"]) & set(evaluation["label"])
    capped = DataTrainingArguments(dataset_name="d", max_train_samples=7, max_eval_samples=3)
    assert tuple(map(len, select_splits(dataset, capped, 0))) == (7, 3)
    dataset["validation"] = Dataset.from_dict({"label": [1, 2]})
    train, evaluation = select_splits(dataset, DataTrainingArguments(dataset_name="d"), 0)
    assert (len(train), evaluation["label"]) == (100, [1, 2])


def test_train_plus_validation_trains_on_both_and_never_evaluates_on_them():
    dataset = DatasetDict(
        {
            "train": Dataset.from_dict({"label": [0, 1, 2]}),
            "validation": Dataset.from_dict({"label": [3, 4]}),
            "test": Dataset.from_dict({"label": [5]}),
        }
    )
    joined = DataTrainingArguments(dataset_name="d", train_split_name="train+validation", eval_split_name="test")
    train, evaluation = select_splits(dataset, joined, 0)
    assert (list(train["label"]), list(evaluation["label"])) == ([0, 1, 2, 3, 4], [5])
    # without an evaluation split, the default is no longer "validation": a part of train+validation is held out
    train, evaluation = select_splits(
        dataset, DataTrainingArguments(dataset_name="d", train_split_name="train+validation", train_val_split=0.2), 0
    )
    assert len(evaluation) == 1 and sorted([*train["label"], *evaluation["label"]]) == [0, 1, 2, 3, 4]
    overlapping = DataTrainingArguments(
        dataset_name="d", train_split_name="train+validation", eval_split_name="validation"
    )
    with pytest.raises(InputError, match="--eval_split_name validation is also a training split"):
        select_splits(dataset, overlapping, 0)
    with pytest.raises(InputError, match="Dataset has no split 'val'; its splits are"):
        select_splits(dataset, DataTrainingArguments(dataset_name="d", train_split_name="train+val"), 0)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"])
def test_any_image_mode_becomes_rgb(mode: str):
    if mode in ("I", "I;16", "F"):
        dtype = {"I": np.int32, "I;16": np.uint16, "F": np.float32}[mode]
        image = PILImage.fromarray((np.arange(20).reshape(4, 5) * 1000).astype(dtype))
        assert image.mode == mode
    else:
        image = PILImage.new("RGB", (5, 4), (200, 10, 30)).convert(mode)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (5, 4)
    if mode in ("I", "I;16", "F"):  # scaled, not clipped: the darkest and brightest pixels span the range
        assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((4, 3))[0] > 60


def test_transparent_pixels_are_laid_on_white():
    assert to_rgb(PILImage.new("RGBA", (2, 2), (10, 20, 30, 0))).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("processor", [ViTImageProcessor(), CLIPImageProcessor()], ids=["vit", "clip"])
def test_eval_preprocessing_matches_the_image_processor(processor):
    """Resize and center crop give what `pipeline` feeds the model at inference (up to resampling details)."""
    y, x = np.mgrid[0:300, 0:400]
    image = PILImage.fromarray(np.stack([x * 255 / 400, y * 255 / 300, (x + y) * 255 / 700], -1).astype(np.uint8))
    geometry = image_geometry(processor)
    ours = eval_preprocessing(geometry)(pil_to_tensor(image))
    reference = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == reference.shape == (3, 224, 224)
    assert (ours - reference).abs().mean() < 0.01
    augmented = train_augmentation(geometry)(pil_to_tensor(image.convert("L")))
    assert augmented.shape == (3, 224, 224)


def test_shipped_accuracy_metric_reports_top1_and_top5_offline():
    metric = evaluate.load(metric_path("accuracy"), keep_in_memory=True)
    scores = np.array(
        [
            [6, 0, 0, 0, 0, 0],  # reference 0 ranked first
            [0, 6, 5, 4, 3, 2],  # reference 0 ranked last: wrong even for top-5
            [0, 0, 6, 0, 5, 0],  # reference 4 ranked second
            [0, 0, 0, 6, 0, 5],  # reference 5 ranked second
        ],
        dtype=np.float32,
    )
    result = metric.compute(predictions=scores, references=[0, 0, 4, 5], top_k=[5])
    assert result == {"accuracy": 0.25, "top5_accuracy": 0.75}
    assert metric.compute(predictions=scores[:, :4], references=[0, 0, 4, 5], top_k=[5]) == {"accuracy": 0.25}
    assert metric.compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}


def test_clip_checkpoints_become_clip_image_classifiers_with_adapters(tmp_path: Path, caplog, capfd):
    from transformers import CLIPConfig, CLIPForImageClassification, CLIPModel

    from hf_vit_adapter.training.arguments import AdapterArguments, ModelArguments
    from hf_vit_adapter.training.modeling import add_adapter, load_backbone

    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32)
    CLIPModel(CLIPConfig(text_config=text, vision_config={**vision, "patch_size": 8})).save_pretrained(tmp_path)
    capfd.readouterr()
    model = load_backbone(ModelArguments(model_name_or_path=str(tmp_path)), {0: "a", 1: "b", 2: "c"})
    assert isinstance(model, CLIPForImageClassification) and model.classifier.out_features == 3
    # the unused text tower and the new head in one line, instead of transformers' report of every key
    assert "LOAD REPORT" not in capfd.readouterr().err
    loaded = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Loaded")]
    assert len(loaded) == 1 and "a new 3-way classification head" in loaded[0]
    assert "checkpoint weights the classifier does not use (text tower, pooler)" in loaded[0]
    peft_model = add_adapter(model, AdapterArguments(bottleneck_size=4, placement="ffn"))
    from hf_vit_adapter import adapter_sites

    assert set(adapter_sites(peft_model)) == {(0, "ffn_output"), (1, "ffn_output")}  # the vision tower's two blocks
    logits = peft_model(pixel_values=torch.rand(2, 3, 32, 32)).logits
    assert logits.shape == (2, 3)


def test_the_load_summary_keeps_real_surprises_loud(caplog):
    from hf_vit_adapter.load_report import report_base_load

    info = {
        "missing_keys": {"classifier.weight", "vit.layers.0.mlp.fc2.weight"},
        "unexpected_keys": {"text_model.embeddings.weight", "odd.weight"},
        "mismatched_keys": {("classifier.bias", (2,), (3,))},
    }
    report_base_load("base", info, 3, head_from_adapter=False)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        "Loading base: 2 weights were not where the model expects them (e.g. vit.layers.0.mlp.fc2.weight, "
        "odd.weight); is this the checkpoint you meant?"
    )
    assert "a new 3-way classification head" in messages[1] and "1 checkpoint weights" in messages[1]


def test_non_finite_trained_weights_are_named():
    from hf_vit_adapter.training.trainer import non_finite_parameters

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert non_finite_parameters(model) == []
    with torch.no_grad():
        model[1].bias[0] = float("inf")
        model[0].weight[0, 0] = float("nan")
    model[0].weight.requires_grad_(False)  # frozen weights are the base's business, not the run's
    assert non_finite_parameters(model) == ["1.bias"]
