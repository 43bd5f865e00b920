"""The page's server and core, in this process: limits on hostile uploads (size, fields, the number at
once, nothing left in the scratch folder), the page loading nothing from elsewhere, and a photo's
faces, probabilities and heat maps from real (untrained, seeded) models and the real face detector.
The browser test, against `facegender serve` itself, is tests/e2e/test_page_in_browser.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from aiohttp import FormData  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from stages import serve  # noqa: E402
from stages.common.errors import UserError  # noqa: E402
from stages.images.reading import UnreadableImage  # noqa: E402
from stages.serving import app as server  # noqa: E402
from tests.photos import write_photos  # noqa: E402

ABOUT = {"models": [{"name": "baseline", "file": "models/baseline/2021/model.keras"}], "classes": ["Female", "Male"],
         "threshold": 0.5}


LIMITS = server.Limits(1000, 2)


def with_client(analyse, check, limits: server.Limits = LIMITS, scratch: Path | None = None):
    """Run `check(client)` (a coroutine function) against make_app(analyse, ...) on 127.0.0.1."""
    async def go():
        app = server.make_app(analyse, ABOUT, limits, scratch)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await check(client)
    return asyncio.run(go())


def form(data: bytes, name: str = "photo.jpg", field: str = "photo") -> FormData:
    body = FormData()
    body.add_field(field, data, filename=name, content_type="application/octet-stream")
    return body


def test_the_page_loads_nothing_from_elsewhere(tmp_path):
    """Offline by construction: no address outside this server in the page's files, and a CSP that
    would block one anyway."""
    for name in server.PAGE_FILES.values():
        text = (server.PAGE_DIR / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name

    async def check(client):
        answers = {route: await client.get(route) for route in server.PAGE_FILES}
        return {route: (answer.status, answer.headers.get("Content-Security-Policy")) for route, answer in answers.items()}

    for status, policy in with_client(lambda path: {}, check, scratch=tmp_path).values():
        assert status == 200 and "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_a_photo_is_analysed_from_a_scratch_file_that_is_then_removed(tmp_path):
    seen = []

    def analyse(path: Path) -> dict:
        seen.append((path.parent, path.read_bytes()))
        return {"width": 10, "height": 10, "faces": []}

    async def check(client):
        answer = await client.post("/api/photos", data=form(b"pixels", "../../etc/holiday.jpg"))
        return answer.status, await answer.json()

    status, body = with_client(analyse, check, scratch=tmp_path)
    assert status == 200 and body == {"file": "holiday.jpg", "width": 10, "height": 10, "faces": []}
    assert seen == [(tmp_path, b"pixels")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size, limit, status", [(1000, 1000, 200), (1001, 1000, 413), (5000, 1000, 413)])
def test_an_upload_over_the_limit_is_refused_and_never_analysed(tmp_path, size, limit, status):
    analysed = []

    async def check(client):
        answer = await client.post("/api/photos", data=form(b"x" * size, "big.jpg"))
        return answer.status, await answer.json()

    got, body = with_client(lambda path: analysed.append(path) or {"faces": []}, check, server.Limits(limit, 2), tmp_path)
    assert got == status
    if status == 413:
        assert analysed == [] and "limit (serve.max_upload_mb)" in body["error"]
    assert list(tmp_path.iterdir()) == []


def test_what_is_no_image_is_one_line_naming_the_file(tmp_path):
    def analyse(path: Path) -> dict:
        raise UnreadableImage("not an image Pillow can identify")

    async def check(client):
        answer = await client.post("/api/photos", data=form(b"hello", "notes.txt"))
        empty = await client.post("/api/photos", data=form(b"", "empty.png"))
        wrong = await client.post("/api/photos", data=form(b"hello", "a.jpg", field="file"))
        return [(each.status, (await each.json())["error"]) for each in (answer, empty, wrong)]

    assert with_client(analyse, check, scratch=tmp_path) == [
        (400, "notes.txt: not an image Pillow can identify"),
        (400, "empty.png: empty file (0 bytes)"),
        (400, 'send the photo as multipart/form-data in the field "photo"')]
    assert list(tmp_path.iterdir()) == []


def test_a_failing_model_is_that_photos_answer_not_the_servers_end(tmp_path, capsys):
    def analyse(path: Path) -> dict:
        raise RuntimeError("out of memory")

    async def check(client):
        failed = await client.post("/api/photos", data=form(b"x", "a.jpg"))
        page = await client.get("/")
        return failed.status, (await failed.json())["error"], page.status

    assert with_client(analyse, check, scratch=tmp_path) == (
        500, "a.jpg: could not be analysed (RuntimeError); the server's log says more", 200)
    assert "a.jpg: RuntimeError: out of memory" in capsys.readouterr().err


def test_more_photos_at_once_than_allowed_are_told_to_retry(tmp_path):
    """max_requests 2: two photos in the server (one in the models, one waiting), the third gets 503 at once."""
    release, started = threading.Event(), threading.Event()

    def analyse(path: Path) -> dict:
        started.set()
        release.wait(30)
        return {"width": 1, "height": 1, "faces": []}

    async def check(client):
        first = asyncio.ensure_future(client.post("/api/photos", data=form(b"1")))
        second = asyncio.ensure_future(client.post("/api/photos", data=form(b"2")))
        while not started.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        third = await client.post("/api/photos", data=form(b"3"))
        refused = third.status, (await third.json())["error"]
        release.set()
        return refused, (await first).status, (await second).status

    refused, first, second = with_client(analyse, check, server.Limits(1000, 2), tmp_path)
    assert refused == (503, "busy with 2 photos already (serve.max_requests); try again in a moment")
    assert (first, second) == (200, 200)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("example.org", False)])
def test_only_loopback_addresses_count_as_this_computer(host, loopback):
    assert serve.is_loopback(host) is loopback


def test_serve_takes_the_trained_models_and_names_the_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no trained model in models/ for any of baseline, transfer: run `make run`"):
        serve.model_paths(None, ["baseline", "transfer"], 2021)
    (tmp_path / "models" / "baseline" / "2021").mkdir(parents=True)
    (tmp_path / "models" / "baseline" / "2021" / "model.keras").write_bytes(b"")
    found, missing = serve.model_paths(None, ["baseline", "transfer"], 2021)
    assert found == [("baseline", Path("models/baseline/2021/model.keras"))] and missing == ["transfer"]
    with pytest.raises(UserError, match=r"models/transfer/2021/model.keras: not found"):
        serve.model_paths(["transfer"], ["baseline", "transfer"], 2021)


@pytest.fixture(scope="module")
def page_models():
    """Two real models as serve loads them: untrained, seeded baseline and improved networks."""
    import keras

    from stages.analysis.heatmaps import Explainer
    from stages.common.config import load_params
    from stages.modelkit import registry
    from stages.modelkit.trained import TrainedModel
    from stages.models import baseline, improved

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    keras.utils.set_random_seed(3)
    built = {"baseline": baseline.make_model((100, 100, 3)),
             "improved": improved.make_model((100, 100, 3), registry.family("improved", params).params)}
    models = [TrainedModel(name, Path(f"{name}.keras"), ["Female", "Male"], model, model, 100)
              for name, model in built.items()]
    return models, [Explainer(each.model, 100, "auto", threshold=0.5) for each in models]


def test_a_photo_gives_each_face_every_models_probability_and_heat_map(page_models, tmp_path):
    from stages.modelkit.prediction import FaceOptions, predict_files
    from stages.serving.photos import PhotoOptions, analyse_photo

    models, explainers = page_models
    photos = write_photos(tmp_path / "photos")
    options = PhotoOptions(25_000_000, FaceOptions(0.9, 1.8), 0.5)
    two = analyse_photo(tmp_path / "photos" / "two_faces.jpg", models, explainers, options)
    assert (two["width"], two["height"]) == (1400, 800)
    assert len(two["faces"]) == photos[tmp_path / "photos" / "two_faces.jpg"] == 2
    for face in two["faces"]:
        assert [result["model"] for result in face["models"]] == ["baseline", "improved"]
        for result in face["models"]:
            assert 0 <= result["probability"] <= 1
            assert result["verdict"] == ("Male" if result["probability"] >= 0.5 else "Female")
            assert result["heatmap"].startswith("data:image/png;base64,")
    # The page gives predict's probability for each face (the same loader, detector, crop and model).
    for index, trained in enumerate(models):
        rows = [row for batch in predict_files(trained.runner, [tmp_path / "photos" / "two_faces.jpg"], trained.classes,
                                               0.5, 8, faces=options.faces) for row in batch]
        assert [face["models"][index]["probability"] for face in two["faces"]] == pytest.approx(
            [row["probability_Male"] for row in rows], abs=1e-4)
        assert [face["box"] for face in two["faces"]] == [[row["left"], row["top"], row["width"], row["height"]]
                                                          for row in rows]
    assert analyse_photo(tmp_path / "photos" / "no_face_room.jpg", models, explainers, options)["faces"] == []
    (tmp_path / "notes.txt").write_text("not a photo")
    with pytest.raises(UnreadableImage, match="not an image"):
        analyse_photo(tmp_path / "notes.txt", models, explainers, options)
    with pytest.raises(UnreadableImage, match=r"over prepare.max_pixels \(1000 pixels\)"):
        analyse_photo(tmp_path / "photos" / "two_faces.jpg", models, explainers,
                      PhotoOptions(1000, FaceOptions(0.9, 1.8), 0.5))
    json.dumps(two)    # what the server sends as it is


def test_only_this_servers_own_pages_reach_it(tmp_path):
    """A forged Host (DNS rebinding) and a cross-site POST get a 403 and one line; the page's own
    requests, from 127.0.0.1 or localhost, and curl's (no Origin) go through."""
    async def check(client):
        port = client.port
        answers = {
            "forged host": await client.get("/api/models", headers={"Host": f"evil.example:{port}"}),
            "forged host post": await client.post("/api/photos", data=form(b"x"), headers={"Host": "evil.example"}),
            "cross-site origin": await client.post("/api/photos", data=form(b"x"),
                                                   headers={"Origin": "http://evil.example"}),
            "other port": await client.post("/api/photos", data=form(b"x"),
                                            headers={"Origin": f"http://127.0.0.1:{port + 1}"}),
            "sec-fetch cross-site": await client.post("/api/photos", data=form(b"x"),
                                                      headers={"Sec-Fetch-Site": "cross-site"}),
            "page": await client.get("/"),
            "localhost": await client.get("/api/models", headers={"Host": f"localhost:{port}"}),
            "own origin": await client.post("/api/photos", data=form(b"x"),
                                            headers={"Origin": f"http://127.0.0.1:{port}"}),
            "curl": await client.post("/api/photos", data=form(b"x")),
        }
        return {name: (answer.status, (await answer.json()).get("error") if answer.status == 403 else None)
                for name, answer in answers.items()}

    found = with_client(lambda path: {"faces": []}, check, scratch=tmp_path)
    assert {name: status for name, (status, _) in found.items()} == {
        "forged host": 403, "forged host post": 403, "cross-site origin": 403, "other port": 403,
        "sec-fetch cross-site": 403, "page": 200, "localhost": 200, "own origin": 200, "curl": 200}
    assert found["forged host"][1].startswith("Host 'evil.example:") and "127.0.0.1, ::1, localhost" in found["forged host"][1]
    assert found["cross-site origin"][1] == ("a request from another site (http://evil.example): only this "
                                             "server's page may send photos")


def test_host_extends_the_names_and_every_address_leaves_the_host_open():
    assert server.server_names("192.168.1.5") == {"127.0.0.1", "localhost", "::1", "192.168.1.5"}
    assert server.server_names("[::1]") == {"127.0.0.1", "localhost", "::1"}
    assert server.server_names("0.0.0.0") is None
