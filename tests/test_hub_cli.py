"""The user's whole flow against the stand-in Hub: dataset on the Hub -> training CLI with --push_to_hub -> pipeline.

1. a tiny base model and a small dataset are pushed to the server (the dataset with `datasets`' own push_to_hub);
2. `python -m hf_vit_adapter.train --dataset_name user/ds --push_to_hub --hub_model_id ...` trains and pushes;
3. the repo holds only the adapter files, and its card reads back with `ModelCard.load`;
4. a fresh process with an empty cache runs `pipeline(model=repo_id)`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import Hub
from huggingface_hub import ModelCard

ALLOWED = {"adapter_model.safetensors", "adapter_config.json", "preprocessor_config.json", "README.md"}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}

PUSH_DATASET = """
    import sys
    import numpy as np
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from PIL import Image as PILImage

    repo_id, colours = sys.argv[1], {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    features = Features({"image": Image(), "label": ClassLabel(names=list(colours))})

    def split(per_class, seed):
        rng = np.random.default_rng(seed)
        images, labels = [], []
        for label, colour in enumerate(colours.values()):
            for _ in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, (36, 40, 3)), 0, 255).astype(np.uint8)
                images.append(PILImage.fromarray(pixels))
                labels.append(label)
        return Dataset.from_dict({"image": images, "label": labels}, features=features)

    DatasetDict({"train": split(8, 0), "validation": split(3, 1)}).push_to_hub(repo_id)
"""

PIPELINE = """
    import json, sys
    from PIL import Image
    from transformers import pipeline
    import hf_vit_adapter

    classifier = pipeline("image-classification", model=sys.argv[1])
    predictions = classifier(Image.new("RGB", (40, 36), (220, 30, 30)), top_k=3)
    print(json.dumps(sorted(p["label"] for p in predictions)))
"""


@pytest.fixture(scope="module")
def dataset_repo(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo_id = f"tester/colours-{uuid.uuid4().hex[:6]}"
    hub.run_python(PUSH_DATASET, tmp_path_factory.mktemp("dataset_home"), repo_id)
    return repo_id


@pytest.fixture(scope="module")
def cli_run(hub: Hub, tiny_base_repo: tuple[str, Path], dataset_repo: str, tmp_path_factory) -> dict:
    """The training CLI run to the end with --push_to_hub into a private repo."""
    work = tmp_path_factory.mktemp("cli")
    repo_id = f"tester/colours-adapter-{uuid.uuid4().hex[:6]}"
    flags = {
        "model_name_or_path": tiny_base_repo[0],
        "dataset_name": dataset_repo,
        "output_dir": str(work / "out"),
        "bottleneck_size": "4",
        "placement": "ffn",
        "per_device_train_batch_size": "8",
        "learning_rate": "0.05",
        "num_train_epochs": "2",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": "true",
        "seed": "0",
        "dataloader_num_workers": "0",
        "disable_tqdm": "true",
        "license": "mit",
        "push_to_hub": "true",
        "hub_model_id": repo_id,
        "hub_private_repo": "true",
    }
    args = [item for key, value in flags.items() for item in (f"--{key}", value)]
    command = [sys.executable, "-m", "hf_vit_adapter.train", *args]
    result = subprocess.run(command, env=hub.env(work / "hf_home"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"training CLI failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return {"repo_id": repo_id, "output_dir": work / "out", "output": result.stdout + result.stderr}


def test_cli_pushes_only_the_adapter_in_one_commit_to_a_private_repo(hub: Hub, cli_run: dict) -> None:
    repo_id = cli_run["repo_id"]
    assert f"Pushed the adapter to {hub.url}/{repo_id}\n" in cli_run["output"]
    assert set(hub.files(repo_id)) - {".gitattributes"} == ALLOWED
    assert hub.upload_commits(repo_id) == ["Upload bottleneck adapter"]
    assert hub.state.repo(repo_id).private is True


def test_cli_card_reads_back(hub: Hub, cli_run: dict, tiny_base_repo: tuple[str, Path], dataset_repo: str) -> None:
    card = ModelCard.load(cli_run["repo_id"])
    assert card.data.library_name == "peft"
    assert card.data.base_model == tiny_base_repo[0]
    assert card.data.datasets == [dataset_repo]
    assert card.data.license == "mit"
    assert {"adapter", "ffn", "vision", "image-classification", "peft"} <= set(card.data.tags)
    accuracy = json.loads((cli_run["output_dir"] / "eval_results.json").read_text())["eval_accuracy"]
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results][0] == ("accuracy", round(accuracy, 6))
    assert f'pipeline("image-classification", model="{cli_run["repo_id"]}")' in card.text
    assert "| 0 | red |" in card.text and "| 2 | blue |" in card.text


def test_cli_never_prints_or_writes_the_token(hub: Hub, cli_run: dict) -> None:
    assert hub.token not in cli_run["output"]
    for path in cli_run["output_dir"].rglob("*"):
        if path.is_file():
            assert hub.token.encode() not in path.read_bytes(), path
    for path, content in hub.files(cli_run["repo_id"]).items():
        assert hub.token.encode() not in content, path


def test_cli_pushed_repo_runs_in_a_fresh_process(hub: Hub, cli_run: dict, tmp_path: Path) -> None:
    result = hub.run_python(PIPELINE, tmp_path / "empty_hf_home", cli_run["repo_id"])
    assert json.loads(result.stdout.strip().splitlines()[-1]) == sorted(COLOURS)


def test_cli_hub_token_flag_is_written_nowhere(
    hub: Hub, tiny_base_repo: tuple[str, Path], dataset_repo: str, tmp_path: Path
) -> None:
    env = hub.env(tmp_path / "hf_home")
    del env["HF_TOKEN"]  # the token comes from --hub_token only
    repo_id = f"tester/token-flag-{uuid.uuid4().hex[:6]}"
    args = {
        "model_name_or_path": tiny_base_repo[0],
        "dataset_name": dataset_repo,
        "output_dir": str(tmp_path / "out"),
        "bottleneck_size": "4",
        "num_train_epochs": "1",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": "true",
        "disable_tqdm": "true",
        "push_to_hub": "true",
        "hub_model_id": repo_id,
        "hub_token": hub.token,
    }
    command = [sys.executable, "-m", "hf_vit_adapter.train", *(x for k, v in args.items() for x in (f"--{k}", v))]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert set(hub.files(repo_id)) - {".gitattributes"} == ALLOWED
    assert hub.token not in result.stdout + result.stderr
    leaking = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file() and hub.token.encode() in p.read_bytes()]
    assert leaking == []


def test_cli_push_problems_are_one_line_before_any_data(
    hub: Hub, tiny_base_repo: tuple[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    """A wrong or missing token, someone else's namespace, a malformed id, a local base nobody else could load: each
    is found before the data (here a folder that does not exist) is read, not after hours of training."""
    from train_helpers import quick_args

    from hf_vit_adapter.train import main

    def fails_with(flags: dict, fragment: str) -> None:
        args = quick_args(tiny_base_repo[1], tmp_path / "out", train_dir="/no/such/folder", push_to_hub="true")
        with pytest.raises(SystemExit) as exit_info:
            main(args + [item for key, value in flags.items() for item in (f"--{key}", value)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and fragment in err, err

    hub_base = {"base_model_id": tiny_base_repo[0]}
    fails_with({**hub_base, "hub_model_id": "tester/x", "hub_token": "hf_wrong"}, "The Hub rejects the token (401")
    fails_with({**hub_base, "hub_model_id": "someone-else/x"}, "cannot write to the namespace 'someone-else'")
    fails_with({**hub_base, "hub_model_id": "tester/a b"}, "--hub_model_id tester/a b is not a valid repo id")
    fails_with({"hub_model_id": "tester/x"}, "would upload an adapter nobody else can load: pass --base_model_id")
    assert hub.state.repo("tester/x") is None and hub.state.repo("someone-else/x") is None
    monkeypatch.delenv("HF_TOKEN")
    fails_with({**hub_base, "hub_model_id": "tester/x"}, "--push_to_hub needs a Hub token")


def test_cli_evaluates_a_pushed_adapter_by_its_hub_id(hub: Hub, cli_run: dict, dataset_repo: str, tmp_path: Path):
    """`--do_train false --adapter_name_or_path user/repo`: adapter, head, image processor and base from the Hub."""
    flags = {
        "adapter_name_or_path": cli_run["repo_id"],
        "dataset_name": dataset_repo,
        "output_dir": str(tmp_path / "evaluation"),
        "do_train": "false",
        "report_to": "none",
        "use_cpu": "true",
        "disable_tqdm": "true",
    }
    command = [sys.executable, "-m", "hf_vit_adapter.train", *(x for k, v in flags.items() for x in (f"--{k}", v))]
    result = subprocess.run(command, env=hub.env(tmp_path / "hf_home"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    evaluated = json.loads((tmp_path / "evaluation" / "eval_results.json").read_text())
    trained = json.loads((cli_run["output_dir"] / "eval_results.json").read_text())
    assert evaluated["eval_accuracy"] == trained["eval_accuracy"]
    assert evaluated["eval_loss"] == pytest.approx(trained["eval_loss"], rel=1e-5)
