"""Sharing on the (stand-in) Hub: adapter-only push in one commit, privacy, no token leaks, loading by repo id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers as T
from conftest import Hub
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import RepositoryNotFoundError
from peft import get_peft_model
from safetensors.torch import save_file

import hf_vit_adapter  # noqa: F401 - registers the method
from hf_vit_adapter import AdapterConfig
from hf_vit_adapter.sharing import push_adapter_to_hub, push_to_hub

LABELS = {0: "apple", 1: "banana", 2: "cherry"}
ALLOWED = {"adapter_model.safetensors", "adapter_config.json", "preprocessor_config.json", "README.md"}
TINY_VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=4
)


PUSH = """
    import logging, os, sys
    import torch, transformers as T
    from peft import get_peft_model
    from safetensors.torch import save_file
    import hf_vit_adapter
    from hf_vit_adapter import AdapterConfig
    from hf_vit_adapter.sharing import push_to_hub

    logging.basicConfig(level=logging.DEBUG)  # anything logged must be safe to show
    base_dir, base_repo, repo_id, reference = sys.argv[1:5]
    labels = {0: "apple", 1: "banana", 2: "cherry"}
    model = T.ViTForImageClassification.from_pretrained(
        base_dir, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
        ignore_mismatched_sizes=True,
    )
    torch.manual_seed(0)
    model = get_peft_model(model, AdapterConfig(bottleneck_size=8, placement="houlsby", init_weights="houlsby"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    pixels, targets = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(3):
        loss = model(pixel_values=pixels, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        save_file({"pixel_values": pixels, "logits": model(pixel_values=pixels).logits}, reference)
    url = push_to_hub(
        model, repo_id, image_processor=T.AutoImageProcessor.from_pretrained(base_dir), base_model=base_repo,
        dataset_name="tester/tiny-fruits", metrics={"eval_accuracy": 0.5, "eval_top5_accuracy": 1.0, "eval_loss": 1.1},
        hyperparameters={"learning_rate": 1e-2, "num_train_epochs": 3, "hub_token": os.environ["HF_TOKEN"]},
        license="apache-2.0",
    )
    print("COMMIT_URL", url)
"""


@pytest.fixture(scope="module")
def pushed(hub: Hub, tiny_base_repo: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An adapter trained in another process and pushed there with `hf_vit_adapter.sharing.push_to_hub`."""
    base_id, base_dir = tiny_base_repo
    work = tmp_path_factory.mktemp("pushed")
    repo_id = f"tester/fruit-adapter-{work.name[-6:]}"
    reference = work / "reference.safetensors"
    result = hub.run_python(PUSH, work / "hf_home", str(base_dir), base_id, repo_id, str(reference))
    return {"repo_id": repo_id, "base": base_id, "reference": reference, "output": result.stdout + result.stderr}


def test_push_to_hub_uploads_only_the_adapter_files_in_one_commit(hub: Hub, pushed: dict) -> None:
    files = hub.files(pushed["repo_id"])
    assert set(files) - {".gitattributes"} == ALLOWED
    assert hub.upload_commits(pushed["repo_id"]) == ["Upload bottleneck adapter"]
    assert (
        f"COMMIT_URL {hub.url}/{pushed['repo_id']}/commit/{hub.state.repo(pushed['repo_id']).head.oid}"
        in (pushed["output"])
    )
    assert hub.state.repo(pushed["repo_id"]).private is False
    # Adapter and head only: far smaller than the base weights.
    base_weights = hub.files(pushed["base"])["model.safetensors"]
    assert len(files["adapter_model.safetensors"]) < len(base_weights) / 2


def test_push_never_prints_or_writes_the_token(hub: Hub, pushed: dict) -> None:
    assert hub.token not in pushed["output"]
    for path, content in hub.files(pushed["repo_id"]).items():
        assert hub.token.encode() not in content, path
    assert "hub_token" not in hub.files(pushed["repo_id"])["README.md"].decode()


def test_pushed_card_is_the_projects_own(hub: Hub, pushed: dict) -> None:
    card = ModelCard.load(pushed["repo_id"])
    assert card.data.library_name == "peft"
    assert card.data.base_model == pushed["base"]
    assert card.data.license == "apache-2.0"
    assert {"adapter", "houlsby", "vision", "image-classification", "peft"} <= set(card.data.tags)
    assert {result.metric_type: result.metric_value for result in card.data.eval_results} == {
        "accuracy": 0.5,
        "top_5_accuracy": 1.0,
    }
    assert f'pipeline("image-classification", model="{pushed["repo_id"]}")' in card.text
    info = HfApi().model_info(pushed["repo_id"])
    assert info.library_name == "peft" and info.pipeline_tag == "image-classification"


LOAD = """
    import json, sys
    import torch
    from PIL import Image
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification, pipeline
    import hf_vit_adapter

    repo_id, base_repo, reference = sys.argv[1:4]
    classifier = pipeline("image-classification", model=repo_id)
    predictions = classifier(Image.new("RGB", (32, 32), (200, 40, 90)), top_k=3)
    base = AutoModelForImageClassification.from_pretrained(base_repo)
    model = PeftModel.from_pretrained(base, repo_id).eval()
    expected = load_file(reference)
    with torch.no_grad():
        logits = model(pixel_values=expected["pixel_values"]).logits
    print(json.dumps({
        "pipeline_labels": sorted(p["label"] for p in predictions),
        "peft_labels": model.config.id2label,
        "max_diff": (logits - expected["logits"]).abs().max().item(),
    }))
"""


def test_fresh_process_loads_the_repo_by_id(hub: Hub, pushed: dict, tmp_path: Path) -> None:
    empty_home = tmp_path / "empty_hf_home"
    result = hub.run_python(LOAD, empty_home, pushed["repo_id"], pushed["base"], str(pushed["reference"]))
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["pipeline_labels"] == sorted(LABELS.values())
    assert loaded["peft_labels"] == {str(k): v for k, v in LABELS.items()}
    assert loaded["max_diff"] < 1e-5
    assert hub.token not in result.stdout + result.stderr
    downloaded = {path.name for path in (empty_home / "hub").rglob("*") if path.is_file()}
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in downloaded)


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved adapter (safetensors, config, image processor, card) made in this process."""
    folder = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    base = T.ViTForImageClassification(T.ViTConfig(**TINY_VIT, num_labels=3, id2label=LABELS))
    base.name_or_path = "tester/tiny-vit"
    get_peft_model(base, AdapterConfig(bottleneck_size=4, placement="ffn")).save_pretrained(folder)
    T.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def clutter(folder: Path, tmp_path: Path) -> Path:
    """A copy of `folder` with what a training run leaves around: base weights, pickles, checkpoints, logs."""
    out = tmp_path / "output"
    out.mkdir()
    for path in folder.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    save_file({"vit.embeddings.cls_token": torch.zeros(1, 1, 32)}, out / "model.safetensors")
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt", "notes.txt", "trainer_state.json"):
        (out / name).write_bytes(b"not for the Hub")
    (out / "checkpoint-1").mkdir()
    (out / "checkpoint-1" / "adapter_model.safetensors").write_bytes(b"old")
    (out / "runs").mkdir()
    return out


def test_push_adapter_to_hub_sends_only_allowed_files(hub: Hub, adapter_folder: Path, tmp_path: Path) -> None:
    repo_id = f"tester/{tmp_path.name[-20:]}"
    url = push_adapter_to_hub(clutter(adapter_folder, tmp_path), repo_id)
    assert set(hub.files(repo_id)) - {".gitattributes"} == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "preprocessor_config.json",
        "README.md",
    }
    assert hub.upload_commits(repo_id) == ["Upload bottleneck adapter"]
    assert url == f"{hub.url}/{repo_id}/commit/{hub.state.repo(repo_id).head.oid}"
    assert hub.state.repo(repo_id).private is False


def test_push_adapter_to_hub_honours_private(hub: Hub, adapter_folder: Path, repo_name: str) -> None:
    repo_id = f"tester/{repo_name}"
    push_adapter_to_hub(adapter_folder, repo_id, private=True, commit_message="Private adapter")
    assert hub.state.repo(repo_id).private is True
    assert hub.upload_commits(repo_id) == ["Private adapter"]
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(repo_id)
    assert HfApi().model_info(repo_id).private is True


def test_push_adapter_to_hub_refuses_private_push_to_public_repo(
    hub: Hub, adapter_folder: Path, repo_name: str
) -> None:
    repo_id = f"tester/{repo_name}"
    push_adapter_to_hub(adapter_folder, repo_id)
    with pytest.raises(ValueError, match="public"):
        push_adapter_to_hub(adapter_folder, repo_id, private=True)
    assert len(hub.upload_commits(repo_id)) == 1


def test_push_adapter_to_hub_refuses_a_folder_without_adapter(hub: Hub, tmp_path: Path, repo_name: str) -> None:
    (tmp_path / "README.md").write_text("# nothing")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        push_adapter_to_hub(tmp_path, f"tester/{repo_name}")
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="pickle"):
        push_adapter_to_hub(tmp_path, f"tester/{repo_name}")
    assert hub.state.repo(f"tester/{repo_name}") is None


def test_push_adapter_to_hub_refuses_base_weights(hub: Hub, adapter_folder: Path, tmp_path: Path) -> None:
    folder = clutter(adapter_folder, tmp_path)
    (folder / "model.safetensors").replace(folder / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="base model weights are never pushed"):
        push_adapter_to_hub(folder, "tester/full-model")
    assert hub.state.repo("tester/full-model") is None


def test_push_adapter_to_hub_refuses_a_file_holding_the_token(hub: Hub, adapter_folder: Path, tmp_path: Path) -> None:
    folder = clutter(adapter_folder, tmp_path)
    (folder / "README.md").write_text(f"token: {hub.token}")
    with pytest.raises(ValueError, match="contains your Hub token"):
        push_adapter_to_hub(folder, "tester/leaky")
    assert hub.state.repo("tester/leaky") is None


def test_push_to_hub_needs_a_hub_base_model_and_keeps_the_adapter_name(hub: Hub, repo_name: str) -> None:
    torch.manual_seed(0)
    base = T.ViTForImageClassification(T.ViTConfig(**TINY_VIT, num_labels=3, id2label=LABELS))
    model = get_peft_model(base, AdapterConfig(bottleneck_size=4, placement="pfeiffer"), adapter_name="fruits")
    with pytest.raises(ValueError, match="not a Hub repo id"):
        push_to_hub(model, f"tester/{repo_name}")
    push_to_hub(model, f"tester/{repo_name}", base_model="tester/tiny-vit", metrics={"eval_accuracy": 0.25})
    files = hub.files(f"tester/{repo_name}")
    assert set(files) - {".gitattributes"} == ALLOWED - {"preprocessor_config.json"}
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "tester/tiny-vit"
    assert model.peft_config["fruits"].base_model_name_or_path is None  # the model itself is left as it was
    assert "pfeiffer" in ModelCard.load(f"tester/{repo_name}").data.tags


def test_push_adapter_to_hub_warns_about_a_card_that_is_not_ours(
    hub: Hub, adapter_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = clutter(adapter_folder, tmp_path)
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# generic card\n")
    with caplog.at_level("WARNING", logger="hf_vit_adapter"):
        push_adapter_to_hub(folder, f"tester/{tmp_path.name[-20:]}")
    assert "not written by write_model_card" in caplog.text
