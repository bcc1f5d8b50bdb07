"""Shared fixtures. The Hub fixtures point huggingface_hub at `tests/hub_server.py`, a local stand-in for the Hub."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hub_server import HubServer, HubState


@dataclass
class Hub:
    """A running stand-in Hub and the settings that point clients at it."""

    url: str
    token: str
    state: HubState
    home: Path

    def env(self, home: Path | None = None) -> dict[str, str]:
        """Environment for a fresh subprocess: this Hub, a fake token and its own empty HF_HOME (cache)."""
        env = dict(os.environ)
        env.update(
            HF_ENDPOINT=self.url,
            HF_HUB_DISABLE_XET="1",  # huggingface_hub >= 1.33 would upload through Xet, which this server lacks
            HF_TOKEN=self.token,
            HF_HOME=str(home or self.home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        )
        for name in ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE"):
            env.pop(name, None)
        return env

    def run_python(self, code: str, home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """Run `code` in a fresh interpreter on this Hub with HF_HOME `home`: transformers, peft and datasets read
        the endpoint at import, so client code that goes through them runs this way."""
        command = [sys.executable, "-c", textwrap.dedent(code), *args]
        result = subprocess.run(command, env=self.env(home), capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"subprocess failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """The files at the head of `repo_id`, by path."""
        return {path: stored.content for path, stored in self.state.repo(repo_id, repo_type).head.files.items()}

    def upload_commits(self, repo_id: str) -> list[str]:
        """Titles of the commits to `repo_id` after the one the Hub makes when it creates the repo."""
        return [commit.title for commit in self.state.repo(repo_id).commits[1:]]


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """A stand-in for the Hugging Face Hub on 127.0.0.1, for the whole session (tests use unique repo ids)."""
    server = HubServer(token=f"hf_fake{uuid.uuid4().hex}").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """Points this process's huggingface_hub at the stand-in Hub, with a fake token and a fresh cache.

    huggingface_hub copies `HF_ENDPOINT` and friends into `huggingface_hub.constants` at import, so the constants are
    patched as well as the environment. Code that keeps its own copy (transformers, datasets) should run in a
    subprocess with `hub.env()`.
    """
    import huggingface_hub
    from huggingface_hub import constants

    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "hub"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in Hub(hub_server.url, hub_server.state.token, hub_server.state, home).env().items():
            if os.environ.get(name) != value:
                patch.setenv(name, value)
        patch.setattr(constants, "ENDPOINT", hub_server.url)
        patch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub_server.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        patch.setattr(constants, "HF_HOME", str(home))
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        patch.setattr(huggingface_hub.hf_api.api, "endpoint", hub_server.url)
        yield Hub(hub_server.url, hub_server.state.token, hub_server.state, home)


@pytest.fixture
def repo_name() -> str:
    """A repo name no other test uses, so tests can share the session's Hub."""
    return f"repo-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def tiny_base_repo(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny ViT (2-class head) and its image processor pushed to the stand-in Hub; returns (repo id, local copy)."""
    import torch
    from huggingface_hub import HfApi
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path_factory.mktemp("tiny_base")
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=4
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    repo_id = f"tester/tiny-vit-{uuid.uuid4().hex[:6]}"
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=folder, repo_id=repo_id, commit_message="tiny base model")
    return repo_id, folder


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log():
    """What transformers logs (its loggers do not propagate to pytest's caplog)."""
    records = _Records()
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(records)
    yield records.messages
    library_logger.removeHandler(records)
