"""`facegender serve` in a real browser: headless Chromium (Debian's chromium, driven by Playwright,
never Playwright's own browser download) opens the page on 127.0.0.1, uploads the test photos and
hostile files at once, and sees what a person would: a box per face, one probability per model per
face, the heat maps loaded, "no face" for a photo without one, one-line errors for a text file, a
pixel bomb and an upload over the size limit. Nothing is requested from anywhere but the server,
and its scratch folder is gone once it stops."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT
from tests.photos import PORTRAIT, room, write_photos
from tests.test_bombs import write_bomb

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container Chromium needs --no-sandbox; the rest keep it from calling Google's hosts.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]
SEED = 2021
MAX_UPLOAD_MB = 4
ANSWERED = ("done", "no-face", "error")


def make_models(project: Path) -> None:
    """Untrained, seeded baseline and improved models where train puts them, each with its training.json."""
    import keras

    from stages.common.config import load_params
    from stages.modelkit import registry
    from stages.models import baseline, improved

    params = load_params(project / "params.yaml")
    keras.utils.set_random_seed(5)
    for name, model in (("baseline", baseline.make_model((100, 100, 3))),
                        ("improved", improved.make_model((100, 100, 3), registry.family("improved", params).params))):
        folder = project / "models" / name / str(SEED)
        folder.mkdir(parents=True)
        model.save(folder / "model.keras")
        (folder / "training.json").write_text(json.dumps({"model": name, "classes": ["Female", "Male"]}))


def uploads(folder: Path) -> dict[str, Path]:
    """The photos and hostile files the test uploads together."""
    photos = folder / "photos"
    write_photos(photos)
    big = room(5200, 3600, seed=4)                     # 18.7 MP: a big photo, under prepare.max_pixels (25 MP)
    big.paste(Image.open(PORTRAIT).convert("RGB").resize((900, 1055)), (3000, 900))
    big.save(folder / "big_photo.jpg", quality=80)
    (folder / "notes.txt").write_text("a shopping list, not a photo\n")
    write_bomb(folder / "bomb.png", 13000, 13000, 2)
    rng = np.random.default_rng(0)
    (folder / "too_big.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes((MAX_UPLOAD_MB + 1) * 2**20))
    return {"two_faces.jpg": photos / "two_faces.jpg", "no_face_room.jpg": photos / "no_face_room.jpg",
            "big_photo.jpg": folder / "big_photo.jpg", "notes.txt": folder / "notes.txt",
            "bomb.png": folder / "bomb.png", "too_big.jpg": folder / "too_big.jpg"}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """`python -m stages.serve --port 0` in a project holding two trained models: (its address, its scratch
    folder, the process)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    make_models(project)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "stages.serve", "--port", "0", "--max-upload-mb",
                                str(MAX_UPLOAD_MB)], cwd=project, env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+/) \(uploads pass through (\S+),", line)
    if found is None:
        process.kill()
        pytest.fail(f"serve did not start: {line}{process.stderr.read()[-3000:]}")
    yield found.group(1), Path(found.group(2)), process
    if process.poll() is None:
        process.kill()


def test_the_page_shows_faces_models_heat_maps_and_one_line_errors(page, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    address, scratch, process = page
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no chromium at {CHROMIUM}: `make browser` installs Debian's chromium (make test does it)")
    files = uploads(tmp_path)
    elsewhere: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(address) or route.request.url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            view = browser.new_page(viewport={"width": 1200, "height": 900})
            view.route("**/*", only_this_server)
            view.goto(address)
            # Locators and expect() only: the page's CSP forbids eval, which wait_for_function needs.
            expect(view.locator("#about")).to_contain_text("2 models: baseline, improved")
            view.set_input_files("#files", [str(path) for path in files.values()])
            expect(view.locator(".card")).to_have_count(len(files))
            answered = ", ".join(f'.card[data-state="{state}"]' for state in ANSWERED)
            expect(view.locator(answered)).to_have_count(len(files), timeout=240_000)
            cards = {name: view.locator(f'.card[data-file="{name}"]') for name in files}
            states = {name: card.get_attribute("data-state") for name, card in cards.items()}
            messages = {name: card.locator(".message").inner_text() for name, card in cards.items()}
            assert states == {"two_faces.jpg": "done", "no_face_room.jpg": "no-face", "big_photo.jpg": "done",
                              "notes.txt": "error", "bomb.png": "error", "too_big.jpg": "error"}, messages

            for name, faces in (("two_faces.jpg", 2), ("big_photo.jpg", 1)):
                card = cards[name]
                assert card.locator(".box").count() == faces
                assert card.locator("td.probability").count() == faces * 2          # one per model per face
                assert card.locator("td.model").all_inner_texts() == ["baseline", "improved"] * faces
                for text in card.locator("td.probability").all_inner_texts():
                    assert 0 <= float(text) <= 1
                assert set(card.locator("td.verdict").all_inner_texts()) <= {"Female", "Male"}
                maps = card.locator("img.heatmap")
                assert maps.count() == faces * 2
                assert all(width > 0 for width in maps.evaluate_all("maps => maps.map(m => m.complete && m.naturalWidth)"))
            assert messages["no_face_room.jpg"] == "No face found in this photo: nothing to classify."
            assert cards["no_face_room.jpg"].locator(".box").count() == 0
            assert messages["notes.txt"] == "notes.txt: not an image Pillow can identify"
            assert messages["bomb.png"].startswith("bomb.png: declares 13000x13000 pixels")
            assert "over prepare.max_pixels" in messages["bomb.png"]
            assert re.fullmatch(rf"(too_big\.jpg: larger than|the upload is [\d.]+ MB, over) the {MAX_UPLOAD_MB} MB "
                                r"limit \(serve\.max_upload_mb\)", messages["too_big.jpg"]), messages["too_big.jpg"]
            view.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            if os.environ.get("FACEGENDER_PAGE_SCREENSHOT"):
                shutil.copyfile(tmp_path / "page.png", os.environ["FACEGENDER_PAGE_SCREENSHOT"])
        finally:
            browser.close()
    assert elsewhere == []
    assert scratch.is_dir() and list(scratch.iterdir()) == []     # every upload removed once answered

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not scratch.exists()
