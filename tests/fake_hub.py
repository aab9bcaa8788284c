"""A loopback Hugging Face Hub for tests: the HTTP endpoints the huggingface_hub 2.4 client calls to publish
and load a repo, with git-like semantics (commits, branches, "same tree -> no new commit"). Like moto for AWS:
small, in memory, and strict enough that a client mistake shows.

Two servers on 127.0.0.1, ephemeral ports, one shared state:
- the API server (`endpoint`, what HF_ENDPOINT points at): whoami, repo create/delete, validate-yaml, preupload,
  NDJSON commit, branch, model/space info (per revision, with siblings, card data, tags, eval results), tree
  listing, list_models, file resolve (HEAD/GET with X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size and
  X-Error-Code), and the git-LFS batch + verify endpoints;
- a storage server (`storage`, standing in for S3/the CDN, a different origin as on the real Hub): the LFS
  upload target (PUT) and the download target of the resolve redirect for LFS files.

The Xet endpoints answer 501: tests run the client with HF_HUB_DISABLE_XET=1 (the legacy LFS path). Which files
go through LFS is decided per preupload by `lfs_patterns` (fnmatch on the path; () sends every file inline).
Every request is logged in `requests` as (server, method, path, status), never with its headers.
"""

import base64
import fnmatch
import hashlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

__all__ = ["FakeHub", "git_blob_id"]

SPACE_SDKS = {"gradio", "docker", "static", "streamlit"}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
LICENSES = {"apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "bsd-3-clause", "openrail", "other"}
PIPELINE_TAGS = {"unconditional-image-generation", "text-to-image", "image-to-image"}
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_id(data: bytes) -> str:
    """git's object id of a blob: sha1 over "blob <size>\\0" + content (what the client compares for inline files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    size: int
    blob_id: str  # git object id (of the pointer file for LFS blobs)
    content: bytes | None = None  # inline (regular) files
    lfs_sha256: str | None = None  # LFS files: the content lives in the LFS store


@dataclass
class Commit:
    oid: str
    parent: str | None
    tree: dict  # path -> Blob
    title: str
    date: str


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    sdk: str | None
    created: str
    refs: dict = field(default_factory=dict)  # branch or "refs/pr/N" -> commit oid
    commits: dict = field(default_factory=dict)  # oid -> Commit
    num_prs: int = 0


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _front_matter(text: str) -> dict:
    if not text.startswith("---"):
        return {}
    meta = yaml.safe_load(text.split("---", 2)[1])
    return meta if isinstance(meta, dict) else {}


def _card_problems(content: str, repo_type: str) -> list[str]:
    """The documented metadata rules hubgen's cards touch (a small subset of the Hub's validator)."""
    try:
        meta = _front_matter(content)
    except yaml.YAMLError as e:
        return [f"front matter is not valid YAML: {e}"]
    problems = []
    if "license" in meta and meta["license"] not in LICENSES:
        problems.append(f'"license" must be a Hub license id, got {meta["license"]!r}')
    if not all(isinstance(t, str) for t in meta.get("tags") or []):
        problems.append('"tags" must be a list of strings')
    if repo_type == "model":
        if "pipeline_tag" in meta and meta["pipeline_tag"] not in PIPELINE_TAGS:
            problems.append(f'"pipeline_tag" {meta["pipeline_tag"]!r} is not a known task')
        for entry in meta.get("model-index") or []:
            for result in entry.get("results") or []:
                if "type" not in (result.get("task") or {}) or not {"name", "type"} <= set(result.get("dataset") or {}):
                    problems.append('"model-index" results need task.type, dataset.name and dataset.type')
                for metric in result.get("metrics") or []:
                    if not metric.get("type") or not isinstance(metric.get("value"), (int, float)):
                        problems.append('"model-index" metrics need a type and a numeric value')
    if repo_type == "space":
        if meta.get("sdk") not in SPACE_SDKS:
            problems.append(f'"sdk" must be one of {sorted(SPACE_SDKS)}, got {meta.get("sdk")!r}')
        for key in ("colorFrom", "colorTo"):
            if key in meta and meta[key] not in SPACE_COLORS:
                problems.append(f'"{key}" must be one of {sorted(SPACE_COLORS)}')
        if len(str(meta.get("short_description", ""))) > 60:
            problems.append('"short_description" must be at most 60 characters')
        if not all(isinstance(m, str) and m.count("/") == 1 for m in meta.get("models") or []):
            problems.append('"models" must be a list of repo ids')
    return problems


class FakeHub:
    """State plus the two servers. `tokens` maps a token to its user; `orgs` maps a user to its organizations."""

    def __init__(self, tokens: dict[str, str], orgs: dict[str, list[str]] | None = None):
        self.tokens = dict(tokens)
        self.orgs = orgs or {}
        self.lfs_patterns: tuple[str, ...] = ("*.safetensors",)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str, int]] = []
        self.lock = threading.RLock()
        self._servers = []

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        for kind in ("api", "storage"):
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self, kind))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def storage(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- what tests inspect ------------------------------------------------------------------------------------

    def history(self, repo_id: str, repo_type: str = "model", ref: str = "main") -> list[str]:
        """Commit oids from `ref` back to the repo's first commit."""
        repo = self.repos[(repo_type, repo_id)]
        oids, oid = [], repo.refs[ref]
        while oid:
            oids.append(oid)
            oid = repo.commits[oid].parent
        return oids

    def files(self, repo_id: str, repo_type: str = "model", ref: str = "main") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        tree = repo.commits[repo.refs[ref]].tree
        return {path: self._content(blob) for path, blob in tree.items()}

    def _content(self, blob: Blob) -> bytes:
        return blob.content if blob.content is not None else self.lfs_store[blob.lfs_sha256]

    # -- repo operations ---------------------------------------------------------------------------------------

    def _user(self, token: str | None, required: bool) -> str | None:
        if token is None:
            if required:
                raise HubError(401, "Invalid username or password.")
            return None
        if token not in self.tokens:
            raise HubError(
                401,
                "Invalid credentials in Authorization header",
                headers={"X-Error-Message": "Invalid credentials in Authorization header"},
            )
        return self.tokens[token]

    def _can_write(self, user: str, namespace: str) -> bool:
        return namespace == user or namespace in self.orgs.get(user, [])

    def _repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and (user is None or not self._can_write(user, repo_id.split("/")[0]))):
            raise HubError(404, "Repository not found", code="RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        oid = repo.refs.get(revision)
        if oid is None and len(revision) == 40 and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.commits[oid]

    def _commit(self, repo: Repo, ref: str, parent: Commit | None, tree: dict, title: str) -> Commit:
        listing = "".join(f"{p} {b.blob_id}\n" for p, b in sorted(tree.items()))
        oid = hashlib.sha1(f"{parent.oid if parent else ''}\n{listing}{title}".encode()).hexdigest()
        commit = Commit(oid, parent.oid if parent else None, tree, title, _now())
        repo.commits[oid] = commit
        repo.refs[ref] = oid
        return commit

    def create_repo(self, user: str, body: dict) -> dict:
        repo_type = body.get("type") or "model"
        namespace, name = body.get("organization") or user, body["name"]
        repo_id = f"{namespace}/{name}"
        if not self._can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        url = f"{self.endpoint}/{TYPE_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, "You already created this repo", url=url)  # the Hub's 409 names the repo URL
        if repo_type == "space" and body.get("sdk") not in SPACE_SDKS:
            raise HubError(400, f"sdk must be one of {sorted(SPACE_SDKS)}")
        private = body.get("private", body.get("visibility") == "private")
        repo = Repo(repo_type, repo_id, bool(private), body.get("sdk"), _now())
        # Like the Hub: the first commit holds a .gitattributes that routes weights to LFS.
        attributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in ("*.safetensors", "*.bin", "*.png"))
        blob = Blob(len(attributes), git_blob_id(attributes.encode()), attributes.encode())
        self._commit(repo, "main", None, {".gitattributes": blob}, "initial commit")
        self.repos[(repo_type, repo_id)] = repo
        return {"url": url, "name": repo_id, "id": repo_id}

    def preupload(self, repo: Repo, revision: str, create_pr: bool, body: dict) -> dict:
        tree = self._resolve(repo, "main" if create_pr else revision).tree
        files = []
        for f in body["files"]:
            mode = "lfs" if any(fnmatch.fnmatch(f["path"], p) for p in self.lfs_patterns) else "regular"
            remote = tree.get(f["path"])
            oid = None
            if remote is not None:  # the client skips a file whose oid it computes the same way
                oid = remote.lfs_sha256 if mode == "lfs" else (remote.blob_id if remote.content is not None else None)
            files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return {"files": files, "commitOid": self._resolve(repo, revision if not create_pr else "main").oid}

    def commit(self, repo: Repo, revision: str, create_pr: bool, lines: list[dict]) -> dict:
        header = lines[0]
        if header.get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        base = self._resolve(repo, "main" if create_pr else revision)
        parent_commit = header["value"].get("parentCommit")
        if parent_commit and not create_pr and parent_commit != base.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(base.tree)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                data = (
                    base64.b64decode(value["content"])
                    if value.get("encoding") == "base64"
                    else value["content"].encode()
                )
                tree[path] = Blob(len(data), git_blob_id(data), data)
            elif key == "lfsFile":
                sha = value["oid"]
                if sha not in self.lfs_store:
                    raise HubError(422, f"LFS object {sha} for {path} was never uploaded")
                size = len(self.lfs_store[sha])
                tree[path] = Blob(size, git_blob_id(_lfs_pointer(sha, size)), lfs_sha256=sha)
            elif key == "deletedFile":
                if tree.pop(path, None) is None:
                    raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
            elif key == "deletedFolder":
                for p in [p for p in tree if p.startswith(path.rstrip("/") + "/")]:
                    del tree[p]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        prefix = f"{self.endpoint}/{TYPE_PREFIX[repo.type]}{repo.id}"
        if tree == base.tree:  # git semantics: the same tree makes no new commit
            return {"success": True, "commitOid": base.oid, "commitUrl": f"{prefix}/commit/{base.oid}",
                    "pullRequestUrl": None, "hookOutput": ""}  # fmt: skip
        title = header["value"].get("summary") or "update"
        if create_pr:
            repo.num_prs += 1
            ref = f"refs/pr/{repo.num_prs}"
            commit = self._commit(repo, ref, base, tree, title)
            pr_url = f"{prefix}/discussions/{repo.num_prs}"
        else:
            if revision not in repo.refs:
                raise HubError(400, f"Cannot commit to {revision!r}: not a branch")
            commit = self._commit(repo, revision, base, tree, title)
            pr_url = None
        return {"success": True, "commitOid": commit.oid, "commitUrl": f"{prefix}/commit/{commit.oid}",
                "pullRequestUrl": pr_url, "hookOutput": ""}  # fmt: skip

    def info(self, repo: Repo, commit: Commit, blobs: bool) -> dict:
        card = _front_matter(self._content(commit.tree["README.md"]).decode()) if "README.md" in commit.tree else {}
        siblings = []
        for path, blob in sorted(commit.tree.items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=blob.size, blobId=blob.blob_id)
                if blob.lfs_sha256:
                    pointer = _lfs_pointer(blob.lfs_sha256, blob.size)
                    sibling["lfs"] = {"size": blob.size, "sha256": blob.lfs_sha256, "pointerSize": len(pointer)}
            siblings.append(sibling)
        # Tags as the Hub derives them: the card's tags, its library, license and datasets, the weight format.
        tags = list(card.get("tags") or [])
        tags += [card["library_name"]] if card.get("library_name") else []
        tags += [f"license:{card['license']}"] if card.get("license") else []
        tags += [f"dataset:{d}" for d in card.get("datasets") or []]
        tags += ["safetensors"] if any(p.endswith(".safetensors") for p in commit.tree) else []
        data = {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "author": repo.id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "tags": list(dict.fromkeys(tags)),
            "cardData": card,
            "siblings": siblings,
        }
        if repo.type == "model":
            data.update(library_name=card.get("library_name"), pipeline_tag=card.get("pipeline_tag"))
            entries = []
            for path, blob in sorted(commit.tree.items()):
                if path.startswith(".eval_results/") and path.endswith((".yaml", ".yml")):
                    entries += yaml.safe_load(self._content(blob)) or []
            if entries:
                data["evalResults"] = entries
        if repo.type == "space":
            data.update(sdk=repo.sdk, models=card.get("models"), datasets=card.get("datasets"))
        return data

    def tree(self, commit: Commit, prefix: str, recursive: bool) -> list[dict]:
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        files, folders = [], set()
        for path, blob in sorted(commit.tree.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :].split("/")
            folders.update(base + "/".join(rest[:i]) for i in range(1, len(rest) if recursive else min(2, len(rest))))
            if recursive or len(rest) == 1:
                entry = {"type": "file", "oid": blob.blob_id, "size": blob.size, "path": path}
                if blob.lfs_sha256:
                    pointer = _lfs_pointer(blob.lfs_sha256, blob.size)
                    entry["lfs"] = {"oid": blob.lfs_sha256, "size": blob.size, "pointerSize": len(pointer)}
                files.append(entry)
        dirs = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "path": f} for f in sorted(folders)]
        return dirs + files


def _make_handler(hub: FakeHub, kind: str):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet; `hub.requests` is the log
            pass

        # -- plumbing ------------------------------------------------------------------------------------------

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body=b"", headers: dict | None = None, content_type="application/json"):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            path = urlsplit(self.path).path
            hub.requests.append((kind, self.command, path, status))

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth[7:] if auth.startswith("Bearer ") else None

        def _dispatch(self):
            try:
                with hub.lock:
                    status, body, headers = (self._api if kind == "api" else self._storage)()
                self._send(status, body, headers)
            except HubError as e:
                headers = dict(e.headers)
                if e.code:
                    headers["X-Error-Code"] = e.code
                headers.setdefault("X-Error-Message", e.message)
                self._send(e.status, {"error": e.message, **e.extra}, headers)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

        # -- storage (S3/CDN stand-in) -------------------------------------------------------------------------

        def _storage(self):
            path = urlsplit(self.path).path
            if self.command == "PUT" and path.startswith("/upload/"):
                sha, data = path.rsplit("/", 1)[1], self._body()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise HubError(400, "content does not match its sha256")
                hub.lfs_store[sha] = data
                return 200, b"", {}
            if self.command in ("GET", "HEAD") and path.startswith("/objects/"):
                sha = path.rsplit("/", 1)[1]
                if sha not in hub.lfs_store:
                    raise HubError(404, "no such object")
                return 200, hub.lfs_store[sha], {}
            raise HubError(404, f"storage has no route {self.command} {path}")

        # -- API -----------------------------------------------------------------------------------------------

        def _api(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            token = self._token()
            m = self.command
            if parts[:2] == ["api", "whoami-v2"]:
                user = hub._user(token, required=True)
                auth = {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}
                orgs = [{"name": o, "type": "org"} for o in hub.orgs.get(user, [])]
                return 200, {"type": "user", "name": user, "fullname": user, "orgs": orgs, "auth": auth}, {}
            if parts[:2] == ["api", "validate-yaml"] and m == "POST":
                body = json.loads(self._body())
                problems = _card_problems(body["content"], body.get("repoType") or "model")
                errors = [{"message": p} for p in problems]
                return (400 if problems else 200), {"errors": errors, "warnings": []}, {}
            if parts[:3] == ["api", "repos", "create"] and m == "POST":
                body = json.loads(self._body())
                return 200, hub.create_repo(hub._user(token, required=True), body), {}
            if parts[:3] == ["api", "repos", "delete"] and m == "DELETE":
                body, user = json.loads(self._body()), hub._user(token, required=True)
                repo_id = f"{body.get('organization') or user}/{body['name']}"
                repo = hub._repo(body.get("type") or "model", repo_id, user)
                if not hub._can_write(user, repo_id.split("/")[0]):
                    raise HubError(403, "no write access")
                del hub.repos[(repo.type, repo.id)]
                return 200, b"", {}
            if parts[:2] == ["api", "models"] and len(parts) == 2 and m == "GET":
                return 200, self._list_models(query, hub._user(token, required=False)), {}
            if parts[0] == "api" and len(parts) >= 4 and parts[1] in ("models", "spaces", "datasets"):
                return self._repo_api(parts[1][:-1], f"{parts[2]}/{parts[3]}", parts[4:], query, token)
            if ".git/info/lfs/objects/" in url.path:
                return self._lfs(url.path, token)
            return self._resolve_file(parts, token)

        def _list_models(self, query, user):
            wanted = query.get("filter", [])
            out = []
            for (repo_type, repo_id), repo in sorted(hub.repos.items()):
                if repo_type != "model" or (
                    repo.private and (user is None or not hub._can_write(user, repo_id.split("/")[0]))
                ):
                    continue
                info = hub.info(repo, repo.commits[repo.refs["main"]], blobs=False)
                if not all(f in info["tags"] for f in wanted):
                    continue
                if "author" in query and info["author"] != query["author"][0]:
                    continue
                if "search" in query and query["search"][0].lower() not in repo_id.lower():
                    continue
                info.pop("siblings")
                info.pop("cardData")
                out.append(info)
            return out

        def _repo_api(self, repo_type, repo_id, rest, query, token):
            m = self.command
            user = hub._user(token, required=m != "GET")
            repo = hub._repo(repo_type, repo_id, user)
            if m != "GET" and not hub._can_write(user, repo_id.split("/")[0]):
                raise HubError(403, f"You don't have write access to {repo_id}")
            if m == "GET" and (not rest or rest[0] == "revision"):
                commit = hub._resolve(repo, "/".join(rest[1:]) if rest else "main")
                return 200, hub.info(repo, commit, blobs="blobs" in query), {}
            if m == "GET" and rest and rest[0] == "tree":
                commit = hub._resolve(repo, rest[1])
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return 200, hub.tree(commit, "/".join(rest[2:]), recursive), {}
            create_pr = query.get("create_pr", ["0"])[0] in ("1", "true")
            if m == "POST" and rest and rest[0] == "preupload":
                return 200, hub.preupload(repo, "/".join(rest[1:]), create_pr, json.loads(self._body())), {}
            if m == "POST" and rest and rest[0] == "commit":
                lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
                return 200, hub.commit(repo, "/".join(rest[1:]), create_pr, lines), {}
            if m == "POST" and rest and rest[0] == "branch":
                branch = "/".join(rest[1:])
                if branch in repo.refs:
                    raise HubError(409, f"Reference already exists: {branch}")
                start = (json.loads(self._body() or b"{}") or {}).get("startingPoint") or "main"
                repo.refs[branch] = hub._resolve(repo, start).oid
                return 200, b"", {}
            if rest and rest[0] in ("xet-write-token", "xet-read-token"):
                raise HubError(501, "This test Hub does not speak Xet: set HF_HUB_DISABLE_XET=1.")
            raise HubError(404, f"no route {m} {self.path}")

        def _lfs(self, path, token):
            repo_path = path.strip("/").split(".git/")[0]
            repo_type = "model"
            for t, prefix in TYPE_PREFIX.items():
                if prefix and repo_path.startswith(prefix):
                    repo_type, repo_path = t, repo_path[len(prefix) :]
            user = hub._user(token, required=True)
            repo = hub._repo(repo_type, repo_path, user)
            if not hub._can_write(user, repo.id.split("/")[0]):
                raise HubError(403, "no write access")
            body = json.loads(self._body())
            if path.endswith("/objects/batch"):
                if "basic" not in body.get("transfers", ["basic"]):
                    raise HubError(501, "only the basic transfer is served here")
                objects = []
                for obj in body["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                    if obj["oid"] not in hub.lfs_store:  # already stored: no actions, the client skips it
                        verify = f"{hub.endpoint}/{TYPE_PREFIX[repo_type]}{repo.id}.git/info/lfs/objects/verify"
                        entry["actions"] = {"upload": {"href": f"{hub.storage}/upload/{obj['oid']}", "header": {}},
                                            "verify": {"href": verify, "header": {}}}  # fmt: skip
                    objects.append(entry)
                return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, {}
            if path.endswith("/objects/verify"):
                data = hub.lfs_store.get(body["oid"])
                if data is None or len(data) != body["size"]:
                    raise HubError(404, f"object {body['oid']} not found or of the wrong size")
                return 200, {"ok": True}, {}
            raise HubError(404, f"no LFS route {path}")

        def _resolve_file(self, parts, token):
            if self.command not in ("GET", "HEAD"):
                raise HubError(404, f"no route {self.command} {self.path}")
            repo_type = "model"
            if parts and parts[0] in ("spaces", "datasets"):
                repo_type, parts = parts[0][:-1], parts[1:]
            if len(parts) < 5 or parts[2] != "resolve":
                raise HubError(404, f"no route {self.command} {self.path}")
            repo = hub._repo(repo_type, f"{parts[0]}/{parts[1]}", hub._user(token, required=False))
            commit = hub._resolve(repo, parts[3])
            filename = "/".join(parts[4:])
            blob = commit.tree.get(filename)
            headers = {"X-Repo-Commit": commit.oid}
            if blob is None:
                raise HubError(404, "Entry not found", code="EntryNotFound", headers=headers)
            if blob.lfs_sha256:  # redirect to the storage origin, as the Hub does to its CDN
                headers.update({"Location": f"{hub.storage}/objects/{quote(blob.lfs_sha256)}",
                                "X-Linked-Etag": f'"{blob.lfs_sha256}"', "X-Linked-Size": str(blob.size),
                                "ETag": f'"{blob.blob_id}"'})  # fmt: skip
                return 302, b"", headers
            headers["ETag"] = f'"{blob.blob_id}"'
            return 200, blob.content, headers

    return Handler
