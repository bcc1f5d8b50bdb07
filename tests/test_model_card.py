"""The project's model card: metadata read back with `ModelCard.load`, and the body a Hub user needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as T
from huggingface_hub import ModelCard
from peft import LoraConfig, get_peft_model

import hf_vit_adapter  # noqa: F401 - registers the method
from hf_vit_adapter import PLACEMENTS, AdapterConfig
from hf_vit_adapter.sharing import write_model_card
from hf_vit_adapter.sharing.card import PLACEMENT_FORMULAS, TEMPLATE_PATH

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = {0: "apple", 1: "banana", 2: "cherry"}
METRICS = {
    "train_loss": 0.6,
    "train_runtime": 9.1,
    "total_flos": 123.0,
    "epoch": 2.0,
    "eval_accuracy": 0.875,
    "eval_top5_accuracy": 0.99,
    "eval_loss": 0.41,
    "eval_runtime": 3.2,
}
TINY_VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=4
)
HYPERPARAMETERS = {"learning_rate": 0.001, "num_train_epochs": 2, "per_device_train_batch_size": 8, "seed": 42}


def adapter_model(placement: str = "houlsby", **config) -> torch.nn.Module:
    torch.manual_seed(0)
    vit = T.ViTConfig(**TINY_VIT, num_labels=3, id2label=LABELS)
    base = T.ViTForImageClassification(vit)
    return get_peft_model(base, AdapterConfig(bottleneck_size=8, placement=placement, **config))


def card_for(tmp_path: Path, model: torch.nn.Module | None = None, **overrides) -> ModelCard:
    kwargs = dict(
        model=model if model is not None else adapter_model(),
        base_model="google/vit-base-patch16-224-in21k",
        dataset_name="tester/fruits",
        metrics=METRICS,
        hyperparameters=HYPERPARAMETERS,
        id2label=LABELS,
        license="apache-2.0",
        repo_id="tester/fruit-adapter",
    )
    kwargs.update(overrides)
    write_model_card(tmp_path, **kwargs)
    return ModelCard.load(tmp_path / "README.md")


def test_card_metadata(tmp_path: Path) -> None:
    card = card_for(tmp_path)
    data = card.data
    assert data.library_name == "peft"
    assert data.base_model == "google/vit-base-patch16-224-in21k"
    assert data.pipeline_tag == "image-classification"
    assert data.datasets == ["tester/fruits"]
    assert data.metrics == ["accuracy"]
    assert data.license == "apache-2.0"
    assert {"adapter", "houlsby", "vision", "image-classification", "peft"} <= set(data.tags)
    assert data.model_name == "fruit-adapter"
    results = {result.metric_type: result for result in data.eval_results}
    assert results["accuracy"].metric_value == 0.875
    assert results["top_5_accuracy"].metric_value == 0.99
    assert {result.dataset_type for result in data.eval_results} == {"tester/fruits"}
    assert {result.task_type for result in data.eval_results} == {"image-classification"}


def test_card_body(tmp_path: Path) -> None:
    model = adapter_model()
    text = card_for(tmp_path, model).text
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = sum(p.numel() for p in model.parameters() if not p.requires_grad)  # frozen base incl. its original head
    # What the adapter is.
    assert "`houlsby`, after the attention output projection and after the FFN output projection" in text
    assert "h ← h + s · up(act(down(h)))" in text
    assert "**Bottleneck size:** 8" in text and "**Activation:** `gelu`" in text
    assert f"**Trainable parameters:** {trainable:,}" in text
    assert f"{100 * trainable / base:.2f}% of the {base:,} parameters of the base model" in text
    # Training data, hyperparameters, results, labels.
    assert "[`tester/fruits`](https://huggingface.co/datasets/tester/fruits)" in text
    assert "| `learning_rate` | 0.001 |" in text and "| `per_device_train_batch_size` | 8 |" in text
    assert "| eval | top-1 accuracy | 0.8750 |" in text and "| eval | top-5 accuracy | 0.9900 |" in text
    assert "| eval | loss | 0.4100 |" in text and "| train | loss | 0.6000 |" in text
    assert "| epoch |" not in text  # epochs belong to the hyperparameters, not the results
    assert "runtime" not in text and "flos" not in text
    assert "| 0 | apple |" in text and "| 2 | cherry |" in text
    # How to use, limitations, citation.
    assert "import hf_vit_adapter" in text
    assert 'pipeline("image-classification", model="tester/fruit-adapter")' in text
    assert 'PeftModel.from_pretrained(base, "tester/fruit-adapter")' in text
    assert "## Limitations" in text and "cannot be merged" in text
    assert "@inproceedings{houlsby2019parameter," in text and "Parameter-Efficient Transfer Learning for {NLP}" in text


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_card_describes_each_placement(tmp_path: Path, placement: str) -> None:
    card = card_for(tmp_path, adapter_model(placement, non_linearity="relu", scaling=0.1))
    description, formula = PLACEMENT_FORMULAS[placement]
    assert placement in card.data.tags
    assert f"`{placement}`, {description}" in card.text and formula in card.text
    assert "**Activation:** `relu`" in card.text and "s = 0.1" in card.text


def test_card_without_optional_facts(tmp_path: Path) -> None:
    card = card_for(tmp_path, dataset_name=None, license=None, metrics={"eval_accuracy": 0.5}, hyperparameters={})
    assert card.data.license is None and card.data.datasets is None
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("accuracy", 0.5)]
    assert "local image folder" in card.text and "Not recorded." in card.text


def test_card_without_metrics_has_no_model_index(tmp_path: Path) -> None:
    card = card_for(tmp_path, metrics={})
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "No evaluation was run." in card.text


def test_card_leaves_out_secrets_and_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_cardSecretValue")
    local_base = tmp_path / "private" / "my-vit"
    local_base.mkdir(parents=True)
    secrets = {**HYPERPARAMETERS, "hub_token": "hf_other", "push_args": "--token hf_cardSecretValue"}
    local_data = tmp_path / "private" / "my-images"
    local_data.mkdir()
    card = card_for(tmp_path, base_model=str(local_base), dataset_name=str(local_data), hyperparameters=secrets)
    content = (tmp_path / "README.md").read_text()
    assert "hf_cardSecretValue" not in content and "hf_other" not in content and "hub_token" not in content
    assert str(tmp_path) not in content
    assert card.data.base_model is None and "`my-vit` (not on the Hub)" in card.text
    assert card.data.datasets is None and "`my-images`, a dataset that is not on the Hub" in card.text
    assert {result.dataset_type for result in card.data.eval_results} == {"imagefolder"}


def test_card_many_labels_fold_away(tmp_path: Path) -> None:
    labels = {index: f"class {index}" for index in range(30)}
    text = card_for(tmp_path, id2label=labels).text
    assert "<details><summary>Show all 30 labels</summary>" in text and "| 29 | class 29 |" in text


def test_card_rejects_other_peft_methods(tmp_path: Path) -> None:
    base = T.ViTForImageClassification(T.ViTConfig(**TINY_VIT))
    lora = get_peft_model(base, LoraConfig(target_modules=["fc2"]))
    with pytest.raises(TypeError, match="AdapterConfig"):
        card_for(tmp_path, lora)


def test_packaged_template_is_model_cards_template() -> None:
    """`model_cards/` is where people edit the card; the package ships a copy so installs can render it."""
    source = REPO_ROOT / "model_cards" / "adapter_card.md"
    assert TEMPLATE_PATH.read_text() == source.read_text(), (
        "model_cards/adapter_card.md and hf_vit_adapter/sharing/templates/adapter_card.md differ: "
        "cp model_cards/adapter_card.md hf_vit_adapter/sharing/templates/adapter_card.md"
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"scaling": "channel", "drop_path": 0.1}, "`s` a trainable per-channel vector"),
        ({"scaling": "learned"}, "`s` a trainable scalar per adapter"),
    ],
)
def test_card_describes_trainable_scales_and_drop_path(tmp_path: Path, config: dict, expected: str) -> None:
    card = card_for(tmp_path, adapter_model("pfeiffer", **config))
    formula_line = next(line for line in card.text.splitlines() if line.startswith("- **Formula:**"))
    assert expected in formula_line and "s = " not in formula_line
    assert ("drop-path 0.1 on the adapter's output" in formula_line) == ("drop_path" in config)
