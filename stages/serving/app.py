"""The page's web server: aiohttp (already installed with DVC, so the page adds no package), serving
the page's three files and one photo per POST.

Uploads are hostile until read: a size limit, checked on the declared length and again while the
bytes arrive; each upload is a file in the scratch folder, removed once analysed (the folder itself is
removed when the server stops); at most Limits.max_requests photos are in the server at once, the
next is told to retry (503); the photo goes through the models one at a time, off the event loop.
Errors come back as {"error": "<file>: <what is wrong>"} with a 4xx status, for the page to show.

Only this computer's own pages reach it: a request whose Host is not one of the server's names (a
DNS-rebinding page) and a POST from another origin (a form on another site: multipart needs no CORS
preflight) get a 403 and one line. The names are 127.0.0.1, localhost, ::1 and the --host address;
listening on every address (0.0.0.0) leaves the Host open, never the origin check.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from aiohttp import web

from stages.images.reading import UnreadableImage

PAGE_DIR = Path(__file__).with_name("page")
PAGE_FILES = {"/": "index.html", "/page.js": "page.js", "/page.css": "page.css"}
# The page loads nothing from anywhere but this server (offline by construction), and sends nothing elsewhere.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CHUNK = 256 * 1024
FIELD = "photo"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::", "")


def server_names(host: str) -> frozenset[str] | None:
    """The names a request's Host may give when the server listens on `host`: this computer's own and
    `host` itself; None (any) when it listens on every address."""
    return None if host in EVERY_ADDRESS else frozenset({*LOOPBACK_NAMES, host.strip("[]").lower()})


def refusal(request: web.Request, names: frozenset[str] | None) -> str | None:
    """Why a request does not come from this server's own pages, or None."""
    name = urlsplit(f"//{request.host}").hostname
    if names is not None and name not in names:
        return (f"Host {request.host!r} is not this server's name ({', '.join(sorted(names))}); "
                "open the page at the address serve printed")
    if request.method == "GET":
        return None
    origin = request.headers.get("Origin")
    if request.headers.get("Sec-Fetch-Site") == "cross-site" or (origin and urlsplit(origin).netloc != request.host):
        return f"a request from another site ({origin or 'cross-site'}): only this server's page may send photos"
    return None


@dataclass(frozen=True)
class Limits:
    """serve.max_upload_mb (in bytes) and serve.max_requests."""

    max_upload_bytes: int
    max_requests: int

    @property
    def megabytes(self) -> str:
        return f"{self.max_upload_bytes / 2**20:g} MB"


def shown_name(filename: str | None) -> str:
    """The upload's name for messages only (never a path here): its last part, at most 120 characters."""
    name = unquote(filename or "the upload").replace("\\", "/").rsplit("/", 1)[-1] or "the upload"
    return name if len(name) <= 120 else name[:117] + "..."


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=HEADERS)


def make_app(analyse: Callable[[Path], dict], about: dict, limits: Limits, scratch: Path,
             names: frozenset[str] | None = server_names("127.0.0.1")) -> web.Application:
    """The application: GET the page and /api/models (`about`), POST /api/photos (multipart, one file in
    the field "photo") -> analyse(saved file) as JSON; a request from elsewhere (refusal) -> 403."""
    models = ThreadPoolExecutor(max_workers=1, thread_name_prefix="models")
    in_server = 0

    async def page_file(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_DIR / PAGE_FILES[request.path], headers=HEADERS)

    async def describe(request: web.Request) -> web.Response:
        return web.json_response(about, headers=HEADERS)

    async def receive(request: web.Request, target: Path) -> str | web.Response:
        """The upload written to `target`: its shown name, or the error response."""
        if request.content_length is not None and request.content_length > limits.max_upload_bytes + CHUNK:
            return error(413, f"the upload is {request.content_length / 2**20:.1f} MB, over the {limits.megabytes} "
                              "limit (serve.max_upload_mb)")
        try:
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError, KeyError):
            return error(400, f"send the photo as multipart/form-data in the field \"{FIELD}\"")
        if part is None or getattr(part, "name", None) != FIELD:
            return error(400, f"send the photo as multipart/form-data in the field \"{FIELD}\"")
        name, size = shown_name(part.filename), 0
        with target.open("wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > limits.max_upload_bytes:
                    return error(413, f"{name}: larger than the {limits.megabytes} limit (serve.max_upload_mb)")
                out.write(chunk)
        if size == 0:
            return error(400, f"{name}: empty file (0 bytes)")
        return name

    async def photo(request: web.Request) -> web.Response:
        nonlocal in_server
        if in_server >= limits.max_requests:
            return error(503, f"busy with {in_server} photos already (serve.max_requests); try again in a moment")
        in_server += 1
        target = scratch / f"{uuid.uuid4().hex}.upload"
        try:
            name = await receive(request, target)
            if isinstance(name, web.Response):
                return name
            try:
                result = await asyncio.get_running_loop().run_in_executor(models, analyse, target)
            except UnreadableImage as problem:
                return error(400, f"{name}: {problem}")
            except Exception as problem:  # noqa: BLE001 - one photo's failure is its answer, not the server's end
                print(f"serve: {name}: {type(problem).__name__}: {problem}", file=sys.stderr)
                return error(500, f"{name}: could not be analysed ({type(problem).__name__}); the server's log says more")
            return web.json_response({"file": name, **result}, headers=HEADERS)
        finally:
            target.unlink(missing_ok=True)
            in_server -= 1

    async def stop_models(app: web.Application) -> None:
        models.shutdown(wait=True, cancel_futures=True)

    @web.middleware
    async def own_pages_only(request: web.Request, handler) -> web.StreamResponse:
        why = refusal(request, names)
        return error(403, why) if why else await handler(request)

    app = web.Application(client_max_size=limits.max_upload_bytes + CHUNK, middlewares=[own_pages_only])
    for route in PAGE_FILES:
        app.router.add_get(route, page_file)
    app.router.add_get("/api/models", describe)
    app.router.add_post("/api/photos", photo)
    app.on_cleanup.append(stop_models)
    return app
