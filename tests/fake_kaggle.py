"""A local stand-in for Kaggle's dataset download API, enough for the official kaggle client.

What the client (kaggle 2.2.5 / kagglesdk 0.1.38) does for `dataset_download_files`:

0. Before downloading, the project asks for the dataset's metadata: POST .../GetDataset {"ownerSlug",
   "datasetSlug"} -> kagglesdk's ApiDataset (dataset_json: current version, dates, size, licence).
1. POST {endpoint}/v1/datasets.DatasetApiService/DownloadDataset (on non-PROD environments the
   prefix is {endpoint}/api/v1/...), JSON body {"ownerSlug", "datasetSlug", "datasetVersionNumber"?},
   with HTTP Basic auth (username, key), "Authorization: Bearer <token>", or, anonymous, none.
   Errors come back as JSON {"code": <status>, "message": ...} with that HTTP status.
2. The RPC answers with a redirect to the archive (on Kaggle: a signed storage URL); requests
   follows it with a streamed GET and the client writes the body to <datasetSlug>.zip.
3. When the body breaks off, the client retries up to 5 times with a Range request (appending on
   206, starting over on 200), sleeping 2**n seconds in between.

How the client logs in, and what the fake answers:
- an access token (KAGGLE_API_TOKEN, its value or a file it names; ~/.kaggle/access_token): checked first,
  POST .../v1/security.OAuthService/IntrospectToken {"token": ...} -> {"active": bool, "username": ...};
  active for the bearer tokens in `tokens`;
- a legacy key (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY): sent unchecked as Basic auth;
- the OAuth login of `kaggle auth login` (~/.kaggle/credentials.json): its access token as a bearer token
  while it is valid; once expired, POST .../v1/users.AccountService/GenerateAccessToken {"refreshToken", ...}
  -> {"token", "expiresIn", "userName"}: for `refresh_token` the fake issues ISSUED_TOKEN and accepts it from
  then on (401 for any other refresh token);
- none: requests without Authorization, let in only for the RPCs in `anonymous_rpcs` ("GetDataset",
  "DownloadDataset"; empty by default: 401, as for invalid credentials).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import json
import socket
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

# The layouts of the real archives (trainval: rashikrahmanpritom/gender-recognition-dataset,
# test: maciejgronczynski/biggest-genderface-recognition-dataset), two images per class.
TRAINVAL_FILES = [
    *(f"Train/{cls}/{cls.lower()}{i}.jpg" for cls in ("Female", "Male") for i in range(2)),
    *(f"Test/{cls}/{cls.lower()}{i}.jpg" for cls in ("Female", "Male") for i in range(2)),
    "Validation/unlabeled0.jpg",
    "Validation/unlabeled1.jpg",
]
TEST_FILES = [f"faces/{cls}/{cls}{i}.jpg" for cls in ("man", "woman") for i in range(2)]

MODES = ("good", "401", "403", "404", "500", "cut", "cut_once", "garbage", "corrupt", "corrupt_once")

# The fake's account (never a real one), and what a leak would show.
USERNAME = "alice-secret-user"
KEY = "s3cr3t-key-123"
TOKEN = "tok-s3cr3t-token-456"
# The OAuth login of `kaggle auth login`: its refresh token, an access token issued before, and the access
# token GenerateAccessToken issues for the refresh token.
REFRESH_TOKEN = "ref-s3cr3t-refresh-789"
OAUTH_TOKEN = "oat-s3cr3t-oauth-012"
ISSUED_TOKEN = "oat-s3cr3t-issued-345"
SECRETS = (USERNAME, KEY, TOKEN, REFRESH_TOKEN, OAUTH_TOKEN, ISSUED_TOKEN)

SPLITS = {
    "train": {"dataset": "trainval", "folder": "train", "classes": {"female": "Female", "male": "Male"}},
    "val": {"dataset": "trainval", "folder": "test", "classes": {"female": "Female", "male": "Male"}},
    "test": {"dataset": "test", "folder": "faces", "classes": {"man": "Male", "woman": "Female"}},
}



def make_tree(root: Path, files: list[str], size: int = 100) -> Path:
    """Write a small JPEG at each relative path under root (distinct colours)."""
    for index, relative in enumerate(files):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = ((index * 53) % 256, (index * 97) % 256, (index * 151) % 256)
        Image.new("RGB", (size, size), colour).save(path, format="JPEG")
    return root


def make_archive(src_dir: Path, zip_path: Path | None = None) -> bytes:
    """Zip everything under src_dir (paths relative to it); returns the bytes, also written to zip_path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(src_dir).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(src_dir).as_posix())
    data = buffer.getvalue()
    if zip_path is not None:
        Path(zip_path).write_bytes(data)
    return data


def corrupted(archive: bytes) -> bytes:
    """The archive with one byte of its first member's data flipped: same size, a CRC mismatch."""
    with zipfile.ZipFile(io.BytesIO(archive)) as handle:
        first = handle.infolist()[0]
    # The local header: 30 bytes, then the name and extra field, then the data.
    offset = first.header_offset + 30 + len(first.filename.encode()) + len(first.extra) + 10
    return archive[:offset] + bytes([archive[offset] ^ 0xFF]) + archive[offset + 1:]


class FakeKaggle:
    """Threaded HTTP server on 127.0.0.1 serving registered dataset archives.

    `mode` decides how the next requests are answered (see MODES); `requests` records each request
    as a dict (method, path, body, auth). Logins: the legacy key (username, key), the bearer `tokens`
    (`token` and those issued for `refresh_token`), and anonymous requests for the RPCs in `anonymous_rpcs`.
    """

    def __init__(self, username: str = "alice", key: str = "key", token: str | None = None,
                 refresh_token: str | None = None) -> None:
        self.username = username
        self.key = key
        self.tokens: set[str] = {token} if token else set()
        self.refresh_token = refresh_token
        self.anonymous_rpcs: set[str] = set()
        self.mode = "good"
        self.datasets: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.requests: list[dict] = []
        self.errors: list[BaseException] = []
        self._taken: dict[str, bool] = {}    # which *_once faults have happened
        self.honour_range = True     # False: a server that answers every Range request with the whole file
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_dataset(self, slug: str, data: bytes, version: int = 4) -> None:
        """Serve `data` as every version of `slug` up to `version`, the current one."""
        self.datasets[slug] = data
        self.versions[slug] = version

    def dataset_json(self, slug: str) -> dict:
        """GetDataset's answer (kagglesdk's ApiDataset, camelCase as on the wire): version N dated
        2021-0N-15, the current version's date as the dataset's last update."""
        current = self.versions[slug]
        return {"id": 1000 + len(slug), "ref": slug, "title": f"Title of {slug.split('/')[1]}",
                "totalBytes": len(self.datasets[slug]), "licenseName": "CC0: Public Domain",
                "currentVersionNumber": current, "lastUpdated": f"2021-{current:02d}-15T10:20:30Z",
                "versions": [{"versionNumber": number, "creationDate": f"2021-{number:02d}-15T10:20:30Z"}
                             for number in range(1, current + 1)]}

    def rpc_calls(self, rpc: str) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/" + rpc)]

    def blob_gets(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "GET" and r["path"].startswith("/blobs/")]

    def start(self) -> "FakeKaggle":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeKaggle":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- decisions, called from handler threads --

    def authorised(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme == "Basic":
            expected = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
            return value == expected
        if scheme == "Bearer":
            return value in self.tokens
        return False

    def lets_in(self, rpc: str, header: str | None) -> bool:
        """Whether a request for `rpc` (e.g. "DownloadDataset") is let in: valid credentials, or none at all
        for an RPC in anonymous_rpcs (invalid ones are refused, as Kaggle does)."""
        return rpc in self.anonymous_rpcs if header is None else self.authorised(header)

    def issue_token(self, refresh_token: str | None) -> str | None:
        """GenerateAccessToken: a new access token for the OAuth login's refresh token, None for another."""
        if self.refresh_token is None or refresh_token != self.refresh_token:
            return None
        self.tokens.add(ISSUED_TOKEN)
        return ISSUED_TOKEN

    def take_corrupt(self) -> bool:
        """Whether this archive GET sends the archive with one byte changed (same size: only a CRC
        check sees it)."""
        return self._take("corrupt")

    def take_cut(self) -> bool:
        """Whether this archive GET is to be broken off."""
        return self._take("cut")

    def _take(self, fault: str) -> bool:
        """Mode `fault` hits every archive GET, mode `<fault>_once` only the first."""
        with self._lock:
            if self.mode == fault:
                return True
            if self.mode == f"{fault}_once" and not self._taken.get(fault):
                self._taken[fault] = True
                return True
            return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKaggle

    def handle_error(self, request, client_address) -> None:
        # A deliberately cut connection is not news; keep stderr (captured by tests) clean.
        self.fake.errors.append(sys.exc_info()[1])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence the access log
        pass

    @property
    def fake(self) -> FakeKaggle:
        return self.server.fake

    def _record(self, body=None) -> None:
        self.fake.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "auth": self.headers.get("Authorization"),
                "range": self.headers.get("Range"),
            }
        )

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        self._record(body)
        path = self.path.split("?", 1)[0]
        for prefix in ("/api/v1/", "/v1/"):
            if path.startswith(prefix):
                rpc = path[len(prefix):]
                break
        else:
            return self._error(404, f"no such path {path}")
        if rpc == "security.OAuthService/IntrospectToken":
            active = (body or {}).get("token") in self.fake.tokens
            return self._json(200, {"active": active, "username": self.fake.username if active else ""})
        if rpc == "users.AccountService/GenerateAccessToken":
            token = self.fake.issue_token((body or {}).get("refreshToken"))
            if token is None:
                return self._error(401, "Unauthenticated: invalid refresh token")
            return self._json(200, {"token": token, "expiresIn": 12 * 3600, "userName": self.fake.username})
        if rpc not in ("datasets.DatasetApiService/DownloadDataset", "datasets.DatasetApiService/GetDataset") \
                or not isinstance(body, dict):
            return self._error(404, f"no such RPC {rpc}")
        mode = self.fake.mode
        if mode == "401" or not self.fake.lets_in(rpc.rsplit("/", 1)[1], self.headers.get("Authorization")):
            return self._error(401, "Unauthenticated: the request has invalid credentials")
        if mode == "403":
            return self._error(403, "Permission 'datasets.get' was denied")
        slug = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if mode == "404" or slug not in self.fake.datasets:
            return self._error(404, "Not found")
        if mode == "500":
            return self._error(500, "Internal error")
        if rpc.endswith("/GetDataset"):
            return self._json(200, self.fake.dataset_json(slug))
        version = body.get("datasetVersionNumber")
        self.send_response(302)
        suffix = f"?version={version}" if version else ""
        self.send_header("Location", f"{self.fake.url}/blobs/{slug}.zip{suffix}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record()
        path = self.path.split("?", 1)[0]
        slug = path.removeprefix("/blobs/").removesuffix(".zip")
        data = self.fake.datasets.get(slug) if path.startswith("/blobs/") else None
        if data is None:
            return self._error(404, "Not found")
        if self.fake.mode == "garbage":
            data = b"this is not a zip archive" * 40
        elif self.fake.take_corrupt():
            data = corrupted(data)
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        start = 0
        cut = self.fake.take_cut()
        requested = self.headers.get("Range", "")
        if requested.startswith("bytes=") and not cut and self.fake.honour_range:
            start = int(requested[len("bytes="):].split("-")[0] or 0)
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(1_600_000_000, usegmt=True))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not cut:
            self.wfile.write(body)
            return
        # Announce the whole file, send half of it, then drop the connection.
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
