"""The stand-in Hub speaks the protocol huggingface_hub and transformers depend on (checked with real clients)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Hub
from huggingface_hub import HfApi, file_exists, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError


def request(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers or {})) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def repo(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("upload")
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "weights.safetensors").write_bytes(bytes(range(256)) * 8)
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("hello")
    repo_id = f"tester/{folder.name[-12:]}"
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=folder, repo_id=repo_id, commit_message="files")
    return repo_id


def test_upload_and_download_round_trip(hub: Hub, repo: str) -> None:
    assert HfApi().whoami()["name"] == "tester"
    assert sorted(HfApi().list_repo_files(repo)) == [
        ".gitattributes",
        "config.json",
        "sub/notes.txt",
        "weights.safetensors",
    ]
    assert Path(hf_hub_download(repo, "weights.safetensors")).read_bytes() == bytes(range(256)) * 8
    assert Path(hf_hub_download(repo, "sub/notes.txt")).read_text() == "hello"
    assert hub.upload_commits(repo) == ["files"]
    assert hub.state.repo(repo).head.files["weights.safetensors"].lfs  # went through the LFS batch API
    assert [commit.title for commit in HfApi().list_repo_commits(repo)] == ["files", "initial commit"]


def test_tree_and_paths_info(repo: str) -> None:
    top = {entry.path: entry for entry in HfApi().list_repo_tree(repo)}
    assert set(top) == {".gitattributes", "config.json", "sub", "weights.safetensors"}
    assert top["weights.safetensors"].lfs.size == 2048 and top["config.json"].lfs is None
    assert [entry.path for entry in HfApi().list_repo_tree(repo, "sub")] == ["sub/notes.txt"]
    info = HfApi().get_paths_info(repo, ["config.json", "sub", "missing.json"])
    assert [(type(entry).__name__, entry.path) for entry in info] == [
        ("RepoFile", "config.json"),
        ("RepoFolder", "sub"),
    ]


def test_resolve_headers(hub: Hub, repo: str) -> None:
    status, headers, body = request(f"{hub.url}/{repo}/resolve/main/weights.safetensors", method="HEAD")
    head = hub.state.repo(repo).head
    assert status == 200 and body == b""
    assert headers["X-Repo-Commit"] == head.oid and headers["Content-Length"] == "2048"
    sha256 = head.files["weights.safetensors"].sha256
    assert headers["X-Linked-Etag"] == f'"{sha256}"' and headers["X-Linked-Size"] == "2048"
    status, headers, body = request(f"{hub.url}/{repo}/resolve/{head.oid}/config.json", headers={"Range": "bytes=1-3"})
    assert status == 206 and body == b'"a"' and headers["Content-Range"] == "bytes 1-3/8"
    assert headers["ETag"].strip('"') == head.files["config.json"].oid


def test_missing_file_is_entry_not_found(hub: Hub, repo: str) -> None:
    status, headers, _ = request(f"{hub.url}/{repo}/resolve/main/adapter_config.json", method="HEAD")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert headers["X-Repo-Commit"] == hub.state.repo(repo).head.oid
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo, "adapter_config.json")
    assert not file_exists(repo, "adapter_config.json") and file_exists(repo, "config.json")
    status, headers, _ = request(f"{hub.url}/tester/no-such-repo/resolve/main/config.json", method="HEAD")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"


def test_auth_and_privacy(hub: Hub, repo_name: str) -> None:
    with pytest.raises(HfHubHTTPError):
        HfApi(token="hf_wrong").whoami()
    with pytest.raises(HfHubHTTPError):
        HfApi(token="hf_wrong").create_repo(f"tester/{repo_name}")
    HfApi().create_repo(f"tester/{repo_name}", private=True)
    assert hub.state.repo(f"tester/{repo_name}").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(f"tester/{repo_name}")
    assert HfApi().model_info(f"tester/{repo_name}").private is True
    HfApi().create_repo(f"tester/{repo_name}", exist_ok=True)  # a second create answers 409, which exist_ok allows


def test_dataset_repos(hub: Hub, repo_name: str) -> None:
    api = HfApi()
    api.create_repo(f"tester/{repo_name}", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id=f"tester/{repo_name}", repo_type="dataset"
    )
    assert api.dataset_info(f"tester/{repo_name}").siblings[-1].rfilename == "data.csv"
    path = hf_hub_download(f"tester/{repo_name}", "data.csv", repo_type="dataset")
    assert Path(path).read_bytes() == b"a,b\n1,2\n"
    assert hub.state.repo(f"tester/{repo_name}") is None  # a dataset, not a model


def test_tokens_and_namespaces_are_answered_as_the_hub_does(hub: Hub, repo_name: str) -> None:
    """401 for a wrong token, 403 for writes in a namespace that is neither the user's nor one of its orgs'."""
    status, _, _ = request(f"{hub.url}/api/whoami-v2", headers={"Authorization": "Bearer hf_wrong"})
    assert status == 401
    with pytest.raises(HfHubHTTPError) as error:
        HfApi().create_repo(f"someone-else/{repo_name}")
    assert error.value.response.status_code == 403
    assert HfApi().whoami()["orgs"][0]["name"] == "tester-org"
    HfApi().create_repo(f"tester-org/{repo_name}")
    hub.state.create_repo("model", f"someone-else/{repo_name}", private=False)
    with pytest.raises(HfHubHTTPError) as error:
        HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=f"someone-else/{repo_name}")
    assert error.value.response.status_code == 403
