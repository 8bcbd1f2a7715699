"""A loopback Hugging Face Hub for tests (stdlib only): the real `huggingface_hub` client talks HTTP to it.

Point a process at it with `HF_ENDPOINT=server.endpoint` (huggingface_hub reads the variable when it is
imported, so set it in a subprocess's environment) and `HF_TOKEN=server.token`.

Just the part of the Hub API that huggingface_hub 2.4 uses to create, upload to, branch and download repos:

- `GET  /api/whoami-v2`                                       token check (401 for a bad token)
- `POST /api/repos/create`                                    409 when the repo exists (`exist_ok` relies on it)
- `POST /api/validate-yaml`                                   README metadata checks (a subset of the Hub's)
- `POST /api/{type}s/{id}/preupload/{rev}`                    every file `uploadMode: "regular"`: the client then
                                                              sends contents inline in the commit, no LFS/Xet
- `POST /api/{type}s/{id}/commit/{rev}`                       NDJSON: header, base64 `file`, `deletedFile/Folder`
- `POST /api/{type}s/{id}/branch/{branch}`                    409 when the branch exists
- `PUT  /api/{type}s/{id}/settings`                           visibility (private / public)
- `GET  /api/{type}s/{id}[/revision/{rev}]`                   repo info with `sha` and `siblings`
- `GET  /api/{type}s/{id}/tree/{rev}[/{path}]`                listing used by `snapshot_download`
- `GET  /api/{type}s/{id}/refs`                               branches (`list_repo_refs`)
- `HEAD/GET /[datasets/]{id}/resolve/{rev}/{path}`            file download with `X-Repo-Commit`, `ETag`,
                                                              `Content-Length`

Errors carry the Hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) so the client raises
`RepositoryNotFoundError` & co. A request with a wrong token gets 401 "Invalid credentials in Authorization
header" (as on the Hub); private repos answer `RepoNotFound` to anyone but their owner; writing needs the token.

Files live in memory (a commit is a full snapshot {path: bytes}, fine for test-sized repos). `server.requests`
logs (method, path) of every request; `server.repo_files(repo_id)` returns a snapshot for assertions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
BAD_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_oid(data: bytes) -> str:
    """The git blob id, which huggingface_hub compares with its own to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def validate_card_metadata(readme: str, repo_type: str) -> tuple[list[dict], list[dict]]:
    """A subset of the Hub's README metadata checks: YAML that parses to a mapping, and the types of the fields
    the Hub indexes (lists of strings for tags/datasets/..., license_name when license is `other`)."""
    import yaml

    def problem(message: str) -> dict:
        return {"message": message}

    if not readme.startswith("---"):
        return [], [problem("empty or missing yaml metadata in repo card")]
    parts = readme.split("---", 2)
    if len(parts) < 3:
        return [problem("unterminated YAML header")], []
    try:
        metadata = yaml.safe_load(parts[1])
    except yaml.YAMLError as error:
        return [problem(f"invalid YAML: {error}")], []
    if metadata is None:
        return [], [problem("empty or missing yaml metadata in repo card")]
    if not isinstance(metadata, dict):
        return [problem("YAML metadata must be a mapping")], []
    errors, warnings = [], []
    list_fields = ["tags", "datasets", "language", "task_categories", "size_categories", "source_datasets"]
    for key in list_fields + ["base_model"]:
        value = metadata.get(key)
        if value is None:
            continue
        values = [value] if isinstance(value, str) and key in ("base_model", "datasets", "language") else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            errors.append(problem(f'"{key}" must be a string or an array of strings'))
    for key in ("license", "library_name", "pipeline_tag", "pretty_name", "license_name"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(problem(f'"{key}" must be a string'))
    if metadata.get("license") == "other" and not metadata.get("license_name"):
        warnings.append(problem('"license_name" is required when "license" is "other"'))
    if repo_type == "model" and isinstance(metadata.get("base_model"), str) and metadata["base_model"].count("/") != 1:
        errors.append(problem('"base_model" must be a Hub model id (namespace/name)'))
    return errors, warnings


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    message: str
    parent: str | None


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    owner: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubServer:
    """Start with `with HubServer() as hub:` (or `.start()` / `.stop()`)."""

    def __init__(self, token: str = "hf_loopbackTestTokenForBaize0000000000", user: str = "baize-tester"):
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clock = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection helpers for tests
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        commit = self.repo(repo_id, repo_type).resolve(revision)
        return dict(commit.files) if commit else {}

    # ------------------------------------------------------------------ state changes (under the lock)
    def _new_commit(self, repo: Repo, files: dict[str, bytes], message: str, parent: str | None) -> Commit:
        self._clock += 1
        oid = hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}:{self._clock}:{message}".encode()).hexdigest()
        commit = Commit(oid=oid, files=files, message=message, parent=parent)
        repo.commits[oid] = commit
        return commit

    def create_repo(self, repo_id: str, repo_type: str, private: bool, owner: str) -> Repo:
        repo = Repo(repo_id=repo_id, repo_type=repo_type, private=private, owner=owner)
        initial = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        repo.branches["main"] = self._new_commit(repo, initial, "initial commit", None).oid
        self.repos[(repo_type, repo_id)] = repo
        return repo


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries Content-Length
    server_hub: HubServer

    def log_message(self, format, *args):  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, error: HubError, head: bool = False) -> None:
        headers = {"X-Error-Message": error.message, **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send(error.status, json.dumps({"error": error.message}).encode(), headers, head=head)

    def _body(self) -> bytes:
        return self._raw_body

    def _caller(self) -> str | None:
        """The user behind the request's token: None when anonymous; 401 when the token is wrong."""
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        if auth != f"Bearer {self.server_hub.token}":
            raise HubError(401, BAD_CREDENTIALS)
        return self.server_hub.user

    def _writer(self) -> str:
        caller = self._caller()
        if caller is None:
            raise HubError(401, "You must be authenticated to write to the Hub")
        return caller

    def _find_repo(self, repo_type: str, repo_id: str, caller: str | None) -> Repo:
        repo = self.server_hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and caller != repo.owner):
            status = 401 if caller is None else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _find_commit(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        # Read the whole body first, whatever the answer: bytes left unread would corrupt the next request
        # on this keep-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw_body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        with hub._lock:
            hub.requests.append((method, url.path))
        segments = [unquote(s) for s in url.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            with hub._lock:
                if segments[0] == "api":
                    self._api(method, segments[1:], query)
                else:
                    self._resolve(method, segments)
        except HubError as error:
            self._error(error, head=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ------------------------------------------------------------------ /api/...
    def _api(self, method: str, seg: list[str], query: dict) -> None:
        hub = self.server_hub
        if seg == ["whoami-v2"] and method == "GET":
            user = self._caller()
            if user is None:
                raise HubError(401, BAD_CREDENTIALS)
            return self._json(
                200,
                {
                    "type": "user",
                    "name": user,
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"role": "write"}},
                },
            )
        if seg == ["repos", "create"] and method == "POST":
            owner = self._writer()
            payload = json.loads(self._body() or b"{}")
            repo_type = payload.get("type") or "model"
            namespace = payload.get("organization") or owner
            if namespace != owner:
                raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
            repo_id = f"{namespace}/{payload['name']}"
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            url = f"{hub.endpoint}/{prefix}{repo_id}"
            if (repo_type, repo_id) in hub.repos:
                raise_payload = {"error": f"You already created this {repo_type} repo", "url": url}
                return self._json(409, raise_payload, {"X-Error-Message": raise_payload["error"]})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            hub.create_repo(repo_id, repo_type, private, owner)
            return self._json(200, {"url": url, "name": repo_id})
        if seg == ["validate-yaml"] and method == "POST":
            payload = json.loads(self._body() or b"{}")
            errors, warnings = validate_card_metadata(payload.get("content", ""), payload.get("repoType") or "model")
            status = 400 if errors else 200
            return self._json(status, {"errors": errors, "warnings": warnings})
        if len(seg) >= 3 and seg[0].rstrip("s") in REPO_TYPES:
            repo_type = seg[0][:-1]
            repo_id = f"{seg[1]}/{seg[2]}"
            return self._repo_api(method, repo_type, repo_id, seg[3:], query)
        raise HubError(404, f"Not implemented by the loopback Hub: {method} /api/{'/'.join(seg)}")

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict) -> None:
        caller = self._caller()
        repo = self._find_repo(repo_type, repo_id, caller)
        action = rest[0] if rest else "info"
        if action in ("info", "revision") and method == "GET":
            commit = self._find_commit(repo, "/".join(rest[1:]) if rest else "main")
            return self._json(200, self._info(repo, commit))
        if action == "tree" and method == "GET":
            commit = self._find_commit(repo, rest[1])
            return self._json(
                200, self._tree(commit, "/".join(rest[2:]), query.get("recursive", "").lower() in ("1", "true"))
            )
        if action == "refs" and method == "GET":
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in repo.branches.items()
            ]
            return self._json(200, {"branches": branches, "converts": [], "tags": []})
        # Everything below writes.
        if caller is None or caller != repo.owner:
            raise HubError(403, "You don't have the rights to write to this repo")
        if action == "preupload" and method == "POST":
            commit = self._find_commit(repo, "/".join(rest[1:]))
            files = json.loads(self._body())["files"]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",  # inline in the commit: no LFS or Xet storage needed
                    "shouldIgnore": False,
                    "oid": git_blob_oid(commit.files[f["path"]]) if f["path"] in commit.files else None,
                }
                for f in files
            ]
            return self._json(200, {"files": answer, "commitOid": commit.oid})
        if action == "commit" and method == "POST":
            return self._commit(repo, "/".join(rest[1:]))
        if action == "settings" and method == "PUT":
            payload = json.loads(self._body() or b"{}")
            if "visibility" in payload:
                repo.private = payload["visibility"] == "private"
            elif "private" in payload:
                repo.private = bool(payload["private"])
            return self._json(200, {})
        if action == "branch" and method == "POST":
            branch = "/".join(rest[1:])
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            payload = json.loads(self._body() or b"{}")
            start = self._find_commit(repo, payload.get("startingPoint") or "main")
            repo.branches[branch] = start.oid
            return self._json(200, {})
        raise HubError(404, f"Not implemented by the loopback Hub: {method} {action}")

    def _commit(self, repo: Repo, revision: str) -> None:
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        parent = repo.commits[repo.branches[revision]]
        files = dict(parent.files)
        message = ""
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
                if value.get("parentCommit") and value["parentCommit"] != parent.oid:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "the loopback Hub only takes base64 file contents")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:  # lfsFile: never requested, since preupload answers "regular"
                raise HubError(400, f"the loopback Hub does not store {key} entries")
        commit = self.server_hub._new_commit(repo, files, message, parent.oid)
        repo.branches[revision] = commit.oid
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        url = f"{self.server_hub.endpoint}/{prefix}{repo.repo_id}/commit/{commit.oid}"
        return self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url})

    def _info(self, repo: Repo, commit: Commit) -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        info = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.owner,
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "lastModified": now,
            "tags": [],
            "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(commit.files.items())],
        }
        return info

    @staticmethod
    def _tree(commit: Commit, path: str, recursive: bool) -> list[dict]:
        prefix = path.rstrip("/") + "/" if path else ""
        entries, folders = [], set()
        for name, data in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix) :]
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append(
                        {"type": "directory", "path": folder, "oid": git_blob_oid(folder.encode()), "size": 0}
                    )
            if recursive or len(parts) == 1:
                entries.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_oid(data)})
        return entries

    # ------------------------------------------------------------------ /{id}/resolve/{rev}/{path}
    def _resolve(self, method: str, seg: list[str]) -> None:
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) < 5 or seg[2] != "resolve" or method not in ("GET", "HEAD"):
            raise HubError(404, "Not found")
        repo = self._find_repo(repo_type, f"{seg[0]}/{seg[1]}", self._caller())
        commit = self._find_commit(repo, seg[3])
        path = "/".join(seg[4:])
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = commit.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
            "ETag": f'"{git_blob_oid(data)}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "none",
        }
        self._send(200, data, headers, head=method == "HEAD")
