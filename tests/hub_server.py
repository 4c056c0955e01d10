"""A fake Hugging Face Hub on 127.0.0.1 for the push tests.

It speaks the part of the Hub HTTP API that huggingface_hub 2.4 uses for ``create_repo``,
``create_branch`` and ``upload_folder`` when xet is off (``constants.HF_HUB_DISABLE_XET``;
with xet on, "lfs" files would go to the xet CAS service instead, which this server does not
speak and answers 404):

    POST /api/repos/create                          {"name", "organization", "visibility"?} -> {"url"}; 409 if it exists
    GET  /api/models/{ns}/{name}                    repo_info (create_repo asks after a 401/403) -> 404
    GET  /api/agent-harnesses                       huggingface_hub's best-effort telemetry registry -> 404
    POST /api/validate-yaml                         README metadata check -> {"errors": [], "warnings": []}
    POST /api/models/{ns}/{name}/branch/{branch}    -> {}; 409 if it exists
    POST /api/models/{ns}/{name}/preupload/{rev}    {"files": [{path, sample, size}]} -> {"files": [{path, uploadMode, shouldIgnore, oid}]}
    POST /{ns}/{name}.git/info/lfs/objects/batch    git-lfs batch API, basic transfer -> an upload href per object
    PUT  /lfs-objects/{oid}                         the LFS upload itself; the bytes must hash to oid
    POST /api/models/{ns}/{name}/commit/{rev}       NDJSON: header, then "file" (base64) and "lfsFile" (oid) lines

Every request is recorded (method, path with query, headers, body) so tests can check what
was sent; anything else is answered 404 and recorded as unexpected. ``fail`` makes one
endpoint answer an error status, with a message that quotes the Authorization header, so
tests can check the client never repeats the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

MAX_BODY = 64 * 1024 * 1024
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/branch/(?P<rev>[^/]+)$"), "branch"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("PUT", re.compile(r"^/lfs-objects/(?P<oid>[0-9a-f]{64})$"), "lfs_upload"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{_REPO}$"), "repo_info"),
    ("GET", re.compile(r"^/api/agent-harnesses$"), "agent_harnesses"),
]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    route: str | None


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict] = field(default_factory=list)  # {"summary", "branch", "regular": [...], "lfs": [...]}


class FakeHub:
    """Start with ``with FakeHub(token) as hub:``; ``hub.url`` is the endpoint."""

    def __init__(self, token: str, max_requests: int = 200):
        self.token = token
        self.max_requests = max_requests  # a bound on any client retry loop: past it, every answer is 400
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail(self, route: str, status: int) -> None:
        """Answer ``status`` on every later request to ``route`` (e.g. "commit")."""
        self.failures[route] = status

    def reset(self) -> None:
        with self._lock:
            self.repos.clear()
            self.lfs.clear()
            self.requests.clear()
            self.failures.clear()

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[branch])

    def unexpected(self) -> list[Request]:
        return [r for r in self.requests if r.route is None]

    # ------------------------------------------------------------------ endpoints: (status, json body)

    def handle(self, request: Request, params: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > self.max_requests:
                return 400, {"error": f"more than {self.max_requests} requests in one test"}
        if request.route is None:
            return 404, {"error": f"unexpected request {request.method} {request.path}"}
        if request.route == "agent_harnesses":
            return 404, {"error": "not served here"}
        if request.route != "lfs_upload" and request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}
        if request.route in self.failures:
            return self.failures[request.route], {"error": f"injected failure for request with authorization {request.headers.get('authorization')}"}
        with self._lock:
            return getattr(self, f"_{request.route}")(request, params)

    def _create(self, request, params):
        payload = json.loads(request.body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def _repo_info(self, request, params):
        return 404, {"error": "Repository not found"}

    def _validate(self, request, params):
        return 200, {"errors": [], "warnings": []}

    def _branch(self, request, params):
        repo = self.repos.get(params["repo"])
        if repo is None:
            return 404, {"error": "Repository not found"}
        branch = unquote(params["rev"])
        if branch in repo.branches:
            return 409, {"error": f"Branch {branch} already exists"}
        repo.branches[branch] = dict(repo.branches["main"])
        return 200, {}

    def _preupload(self, request, params):
        if params["repo"] not in self.repos:
            return 404, {"error": "Repository not found"}
        files = json.loads(request.body)["files"]
        return 200, {"files": [{"path": f["path"], "uploadMode": _upload_mode(f["path"], f["size"]), "shouldIgnore": False,
                                "oid": None} for f in files]}

    def _lfs_batch(self, request, params):
        payload = json.loads(request.body)
        assert payload["operation"] == "upload" and "basic" in payload["transfers"], payload
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-objects/{obj['oid']}"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def _lfs_upload(self, request, params):
        if hashlib.sha256(request.body).hexdigest() != params["oid"]:
            return 400, {"error": "uploaded bytes do not match the oid"}
        self.lfs[params["oid"]] = request.body
        return 200, {}

    def _commit(self, request, params):
        repo = self.repos.get(params["repo"])
        branch = unquote(params["rev"])
        if repo is None or branch not in repo.branches:
            return 404, {"error": "Repository or revision not found"}
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        header, changes = lines[0], lines[1:]
        assert header["key"] == "header", header
        commit = {"summary": header["value"]["summary"], "branch": branch, "regular": [], "lfs": []}
        files = dict(repo.branches[branch])
        for change in changes:
            value = change["value"]
            if change["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                commit["regular"].append(value["path"])
            elif change["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 422, {"error": f"LFS object {value['oid']} of {value['path']} was never uploaded"}
                files[value["path"]] = self.lfs[value["oid"]]
                commit["lfs"].append(value["path"])
            else:
                return 400, {"error": f"unsupported commit operation {change['key']}"}
        repo.branches[branch] = files
        repo.commits.append(commit)
        oid = hashlib.sha1(request.body).hexdigest()
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{params['repo']}/commit/{oid}"}


def _upload_mode(path: str, size: int) -> str:
    """What the Hub's default .gitattributes decides: weights (and anything big) go to LFS."""
    return "lfs" if path.endswith((".safetensors", ".bin")) or size > 10 * 1024 * 1024 else "regular"


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # a stuck client cannot hold a server thread forever

        def _serve(self):
            body = self._body()
            path = urlsplit(self.path).path
            route, params = None, {}
            for method, pattern, name in _ROUTES:
                if method == self.command and (match := pattern.match(path)):
                    route, params = name, match.groupdict()
                    break
            request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, route)
            status, payload = hub.handle(request, params)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("X-Error-Message", payload.get("error", ""))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks, total = [], 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY:
                        raise ValueError("request body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("request body too large")
            return self.rfile.read(length)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args):  # keep test output quiet
            pass

    return Handler
