"""The page's screenshot in docs/predict.md (docs/images/serve.jpg): `facegender serve` on this
checkout's trained models, three test photos (tests/photos.py) and a text file uploaded in headless
Chromium, as a person would see them.

    python -m docs.screenshot          # after make run (the models must be trained)
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tests.photos import write_photos

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "images" / "serve.jpg"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        photos = Path(scratch)
        write_photos(photos)
        (photos / "shopping_list.txt").write_text("milk, bread\n")
        uploads = [photos / name for name in ("two_faces.jpg", "no_face_room.jpg", "shopping_list.txt")]
        server = subprocess.Popen([sys.executable, "-m", "stages.serve", "--port", "0"], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE)
        try:
            address = re.search(r"on (http://\S+/) ", server.stdout.readline()).group(1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
                view = browser.new_page(viewport={"width": 1100, "height": 900})
                view.goto(address)
                expect(view.locator("#about")).to_contain_text("models:")
                view.set_input_files("#files", [str(path) for path in uploads])
                answered = '.card[data-state="done"], .card[data-state="no-face"], .card[data-state="error"]'
                expect(view.locator(answered)).to_have_count(len(uploads), timeout=300_000)
                view.screenshot(path=str(photos / "page.png"), full_page=True)
                browser.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        # JPEG keeps the photos and heat maps as they look, in a small file for git.
        Image.open(photos / "page.png").convert("RGB").save(TARGET, quality=85, optimize=True, progressive=True)
    print(f"wrote {TARGET} ({TARGET.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
