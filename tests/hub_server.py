"""A Hub-protocol HTTP server on 127.0.0.1 that stands in for the Hugging Face Hub in tests.

The real Hub is unreachable from the test machines, so the sharing tests point `HF_ENDPOINT` at this server. It
speaks the subset of the Hub's HTTP API that `huggingface_hub` (2.x, with `HF_HUB_DISABLE_XET=1`), `transformers`,
`peft` and `datasets` use to create repos, upload files in commits and download them again:

- `GET /api/whoami-v2`, `POST /api/repos/create` (the `visibility` is recorded), `POST /api/validate-yaml`;
- `POST /api/{type}s/{repo}/preupload/{rev}`, the LFS batch API (`POST /{repo}.git/info/lfs/objects/batch`, then a
  `PUT` of each blob and a verify call) and the ndjson `POST /api/{type}s/{repo}/commit/{rev}`;
- `GET /api/{type}s/{repo}[/revision/{rev}]`, `/tree/{rev}[/{path}]`, `POST /paths-info/{rev}`, `/refs`,
  `/commits/{rev}`;
- `HEAD` and `GET /{repo}/resolve/{rev}/{path}` with `ETag`, `X-Repo-Commit`, `Content-Length`, `X-Linked-Etag` and
  `X-Linked-Size` for LFS files and `Range` support. A missing file answers 404 with `X-Error-Code: EntryNotFound`,
  which transformers relies on to tell "no such file" from "no such repo".

Like the Hub, it answers 401 to a missing or wrong token where one is needed, and 403 to writes (creating a repo,
uploading, committing) in a namespace that is neither the token's user (`tester`) nor one of its organisations
(`tester-org`).

Everything lives in memory in a `HubState` that tests can inspect (files, commits, privacy, requests seen).
It is a test fixture, not a Hub implementation: no Xet, no pull requests, no pagination, no branches but `main`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER = "tester"
ORGS = ("tester-org",)  # organisations the token's user may write to
MAIN = "main"
TYPE_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Stored through LFS like the Hub's default .gitattributes does; anything else above 10 MB too.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".zip")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()


def git_blob_oid(content: bytes) -> str:
    """The git object id the Hub reports (and uses as ETag) for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def oid(self) -> str:
        return self.sha256 if self.lfs else git_blob_oid(self.content)


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, StoredFile]
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def commit_at(self, revision: str) -> Commit | None:
        if revision == MAIN:
            return self.head
        return next((commit for commit in self.commits if commit.oid == revision), None)


class HubState:
    """Everything the server holds; tests read it directly."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for debugging
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.RLock()

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type, repo_id, private)
        files = {".gitattributes": StoredFile(GITATTRIBUTES, lfs=False)}
        repo.commits.append(Commit(uuid.uuid4().hex + uuid.uuid4().hex[:8], "initial commit", files))
        self.repos[(repo_type, repo_id)] = repo
        return repo


class HubServer:
    """Runs a `HubState` behind `ThreadingHTTPServer` on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, token: str) -> None:
        self.state = HubState(token)
        handler = type("BoundHubHandler", (_HubHandler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        handler.base_url = self.url
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


def _split(path: str) -> list[str]:
    return [unquote(part) for part in path.strip("/").split("/")]


def _repo_type_from_plural(plural: str) -> str:
    return {"models": "model", "datasets": "dataset", "spaces": "space"}[plural]


def _card_data(files: dict[str, StoredFile]) -> dict | None:
    readme = files.get("README.md")
    if readme is None:
        return None
    text = readme.content.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    try:
        return yaml.safe_load(text.split("---", 2)[1]) or None
    except (yaml.YAMLError, IndexError):
        return None


def _tree_entry(path: str, stored: StoredFile | None) -> dict:
    if stored is None:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    entry = {"type": "file", "oid": git_blob_oid(stored.content), "size": len(stored.content), "path": path}
    if stored.lfs:
        entry["lfs"] = {"oid": stored.sha256, "size": len(stored.content), "pointerSize": 134}
    return entry


def _folders(files: dict[str, StoredFile]) -> set[str]:
    folders = set()
    for path in files:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[: index + 1]) for index in range(len(parts)))
    return folders


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    base_url: str

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass  # keep test output quiet; `HubState.requests` records what was asked

    # ---- plumbing -------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body()
        with self.state.lock:
            self.state.requests.append((method, url.path))
        try:
            self._route(method, url.path)
        except _HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            self._send_json({"error": error.message}, status=error.status, headers=headers, head=method == "HEAD")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, payload: object, status: int = 200, headers: dict | None = None, head: bool = False) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})}, head=head)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.state.token}"

    def _require_auth(self) -> None:
        if not self._authorized():
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _get_repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        repo = self.state.repo(repo_id, repo_type)
        if repo is None or (repo.private and not self._authorized()):
            raise _HubError(404, "Repository not found", code="RepoNotFound")
        if write:
            self._require_auth()
            self._require_namespace(repo_id.split("/")[0], repo_type)
        return repo

    def _require_namespace(self, namespace: str, repo_type: str) -> None:
        if namespace not in (USER, *ORGS):
            message = f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"'
            raise _HubError(403, message)

    def _get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.commit_at(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return commit

    # ---- routing --------------------------------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> None:
        parts = _split(path)
        if parts[:2] == ["api", "whoami-v2"] and method == "GET":
            return self._whoami()
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if parts[0] == "lfs-upload" and method == "PUT":
            return self._lfs_put(parts[1])
        if parts[0] == "lfs-verify" and method == "POST":
            return self._lfs_verify()
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in ("models", "datasets", "spaces"):
            repo_type = _repo_type_from_plural(parts[1])
            return self._api_repo(method, repo_type, f"{parts[2]}/{parts[3]}", parts[4:])
        repo_type, rest = "model", parts
        if parts[0] in ("datasets", "spaces"):
            repo_type, rest = _repo_type_from_plural(parts[0]), parts[1:]
        if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{rest[0]}/{rest[1][: -len('.git')]}")
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        with self.state.lock:
            self.state.unhandled.append((method, path))
        raise _HubError(404, f"The test Hub server does not handle {method} {path}")

    def _api_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        if method == "GET" and not rest:
            return self._repo_info(repo_type, repo_id, MAIN)
        if method == "GET" and rest[0] == "revision" and len(rest) >= 2:
            return self._repo_info(repo_type, repo_id, "/".join(rest[1:]))
        if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
            return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if method == "POST" and rest[0] == "paths-info" and len(rest) == 2:
            return self._paths_info(repo_type, repo_id, rest[1])
        if method == "POST" and rest[0] == "preupload" and len(rest) == 2:
            return self._preupload(repo_type, repo_id, rest[1])
        if method == "POST" and rest[0] == "commit" and len(rest) == 2:
            return self._commit(repo_type, repo_id, rest[1])
        if method == "GET" and rest == ["refs"]:
            return self._refs(repo_type, repo_id)
        if method == "GET" and rest[0] == "commits" and len(rest) == 2:
            return self._commits(repo_type, repo_id, rest[1])
        with self.state.lock:
            self.state.unhandled.append((method, self.path))
        raise _HubError(404, f"The test Hub server does not handle {method} {self.path}")

    # ---- account and repos ----------------------------------------------------------------------------------------

    def _whoami(self) -> None:
        self._require_auth()
        self._send_json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": USER,
                "fullname": "Test User",
                "email": None,
                "orgs": [{"name": org, "type": "org", "roleInOrg": "write"} for org in ORGS],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
            }
        )

    def _create_repo(self) -> None:
        self._require_auth()
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        self._require_namespace(payload.get("organization") or USER, repo_type)
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.base_url}/{TYPE_PREFIXES[repo_type]}{repo_id}"
        with self.state.lock:
            if self.state.repo(repo_id, repo_type) is not None:  # the Hub names the existing repo's url too
                self._send_json({"error": "You already created this repo", "url": url}, status=409)
                return
            self.state.create_repo(repo_type, repo_id, private=payload.get("visibility") == "private")
        self._send_json({"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _validate_yaml(self) -> None:
        content = json.loads(self.body).get("content", "")
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as error:
                self._send_json({"errors": [{"message": str(error)}], "warnings": []}, status=400)
                return
        self._send_json({"errors": [], "warnings": []})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            siblings = []
            for path, stored in sorted(commit.files.items()):
                sibling = {"rfilename": path, "size": len(stored.content), "blobId": git_blob_oid(stored.content)}
                if stored.lfs:
                    sibling["lfs"] = {"size": len(stored.content), "sha256": stored.sha256, "pointerSize": 134}
                siblings.append(sibling)
            card_data = _card_data(commit.files) or {}
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.commits[0].date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card_data.get("tags") or []),
            "cardData": card_data,
            "siblings": siblings,
        }
        if repo_type == "model":
            info["library_name"] = card_data.get("library_name")
            info["pipeline_tag"] = card_data.get("pipeline_tag")
        self._send_json(info)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        with self.state.lock:
            head = self._get_repo(repo_type, repo_id).head.oid
        branch = {"name": MAIN, "ref": f"refs/heads/{MAIN}", "targetCommit": head}
        self._send_json({"branches": [branch], "converts": [], "tags": []})

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            self._get_commit(repo, revision)
            commits = [
                {"id": c.oid, "title": c.title, "message": "", "authors": [{"user": USER}], "date": c.date}
                for c in reversed(repo.commits)
            ]
        self._send_json(commits)

    # ---- listing --------------------------------------------------------------------------------------------------

    def _tree(self, repo_type: str, repo_id: str, revision: str, folder: str) -> None:
        recursive = self.query.get("recursive", ["False"])[0].lower() == "true"
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            files, folders = commit.files, _folders(commit.files)
        if folder and folder not in folders:
            raise _HubError(404, f"{folder} does not exist on {revision}", code="EntryNotFound", commit=commit.oid)
        prefix = f"{folder}/" if folder else ""

        def listed(path: str) -> bool:
            return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

        entries = [_tree_entry(path, None) for path in sorted(folders) if listed(path)]
        entries += [_tree_entry(path, stored) for path, stored in sorted(files.items()) if listed(path)]
        self._send_json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        form = parse_qs(self.body.decode())
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            files, folders = commit.files, _folders(commit.files)
        entries = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                entries.append(_tree_entry(path, files[path]))
            elif path in folders:
                entries.append(_tree_entry(path, None))
        self._send_json(entries)

    # ---- upload ---------------------------------------------------------------------------------------------------

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        payload = json.loads(self.body)
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            files = self._get_commit(repo, revision).files
        answers = []
        for item in payload["files"]:
            path, size = item["path"], item["size"]
            lfs = path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE
            existing = files.get(path)
            answers.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing is not None else None,
                }
            )
        self._send_json({"files": answers, "commitOid": repo.head.oid})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        payload = json.loads(self.body)
        with self.state.lock:
            self._get_repo(repo_type, repo_id, write=True)
            known = set(self.state.lfs_blobs)
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in known:
                entry["actions"] = {
                    "upload": {"href": f"{self.base_url}/lfs-upload/{item['oid']}", "header": {}},
                    "verify": {"href": f"{self.base_url}/lfs-verify", "header": {}},
                }
            objects.append(entry)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise _HubError(400, "Uploaded content does not match its sha256")
        with self.state.lock:
            self.state.lfs_blobs[oid] = self.body
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _lfs_verify(self) -> None:
        payload = json.loads(self.body)
        with self.state.lock:
            blob = self.state.lfs_blobs.get(payload["oid"])
        if blob is None or len(blob) != payload["size"]:
            raise _HubError(404, f"LFS object {payload['oid']} was not uploaded")
        self._send_json({"success": True})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        if self.query.get("create_pr"):
            raise _HubError(400, "The test Hub server does not support pull requests")
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id, write=True)
            parent = self._get_commit(repo, revision)
            files = dict(parent.files)
            title = "commit"
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    title = value["summary"]
                elif key == "file":
                    files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    blob = self.state.lfs_blobs.get(value["oid"])
                    if blob is None:
                        raise _HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = StoredFile(blob, lfs=True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise _HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {path: stored for path, stored in files.items() if not path.startswith(folder)}
                else:
                    raise _HubError(400, f"Unknown commit operation {key!r}")
            oid = hashlib.sha1(f"{parent.oid}{title}{time.time_ns()}".encode()).hexdigest()
            repo.commits.append(Commit(oid, title, files))
        url = f"{self.base_url}/{TYPE_PREFIXES[repo_type]}{repo_id}/commit/{oid}"
        self._send_json({"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None})

    # ---- download -------------------------------------------------------------------------------------------------

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self.state.lock:
            repo = self._get_repo(repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            stored = commit.files.get(path)
        if stored is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound", commit=commit.oid)
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{stored.oid}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(len(stored.content))
        content, status = stored.content, 200
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start_text, _, end_text = ranged[len("bytes=") :].split(",")[0].partition("-")
            size = len(content)
            if start_text:
                start, end = int(start_text), int(end_text) if end_text else size - 1
            else:
                start, end = max(size - int(end_text), 0), size - 1
            end = min(end, size - 1)
            if start >= size:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"}, head=method == "HEAD")
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, head=method == "HEAD")
