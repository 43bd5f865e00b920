"""The offline sample source: seeded synthetic faces laid out exactly like the two Kaggle datasets.

`trainval` mimics rashikrahmanpritom/gender-recognition-dataset: Train/, Test/ with Female/ and
Male/ sub-folders of 100x100 RGB JPEGs, and a Validation/ folder without labels.
`test` mimics maciejgronczynski/biggest-genderface-recognition-dataset: faces/man, faces/woman,
JPEGs of varying sizes, about 65% men, shot in another "studio" (framing, light, noise, rotation),
so the cross-dataset test shows a real drop.

The class signal is a bundle of overlapping cues (hair length, beard, lip colour, jaw width,
brow weight), none decisive on its own, so a small CNN lands clearly above chance and clearly
below perfect. Each image is drawn from its own seeded generator: output is byte-identical
whatever the order or number of processes. Scraped-data oddities are added on purpose: grey,
CMYK, alpha PNG, EXIF-rotated, truncated and empty files, Thumbs.db and .DS_Store. One addition the
real data lack: groups.csv at each dataset's top, a synthetic skin-tone group per face.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from stages.common.config import SampleParams
from stages.common.errors import UserError

# Probability of each cue per class: overlapping on purpose.
CUE_PROBABILITY = {
    "Female": dict(long_hair=0.72, beard=0.02, red_lips=0.45, jaw=0.73, brow=1.7),
    "Male": dict(long_hair=0.26, beard=0.35, red_lips=0.10, jaw=0.80, brow=2.4),
}
# Scraped labels are never clean: this share of faces is drawn as the other class.
LABEL_NOISE = 0.04
SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 92), (141, 85, 54), (90, 56, 37)]
# Each face's synthetic group (groups.csv), by its tone: drawn independently of the class.
TONE_GROUPS = ["lighter", "lighter", "medium", "medium", "darker", "darker"]
HAIR_COLOURS = [(20, 16, 14), (60, 40, 25), (110, 75, 40), (180, 140, 80), (220, 200, 150), (130, 40, 25)]


@dataclass(frozen=True)
class Studio:
    """How a source photographs its faces: the cross-dataset shift lives here."""

    face_height: tuple[float, float]  # fraction of the canvas height (min, max)
    centre_jitter: float              # fraction of the canvas
    rotation_degrees: float
    noise_sigma: tuple[float, float]
    jpeg_quality: tuple[int, int]
    colour_cast: float                # max per-channel gain deviation
    sizes: tuple[int, int] | None     # None: 100x100; else min/max side in pixels


TRAINVAL_STUDIO = Studio((0.56, 0.64), 0.02, 3.0, (2.0, 5.0), (88, 95), 0.05, None)
# Its sizes come from download.sample.test_sizes.
TEST_STUDIO = Studio((0.50, 0.68), 0.03, 8.0, (3.0, 9.0), (55, 88), 0.10, (64, 260))


def draw_face(rng: np.random.Generator, gender: str, studio: Studio, traits: dict | None = None) -> Image.Image:
    """Draw one synthetic face photo labelled `gender` ('Female' or 'Male'); `traits` gets its skin tone."""
    if rng.random() < LABEL_NOISE:
        gender = "Male" if gender == "Female" else "Female"
    cues = CUE_PROBABILITY[gender]
    if studio.sizes is None:
        width = height = 100
    else:
        side = int(rng.integers(studio.sizes[0], studio.sizes[1] + 1))
        aspect = float(rng.uniform(0.9, 1.12))
        width, height = side, max(32, int(side * aspect))
    scale = 2  # draw large, then downsample: smooth edges like a photo
    big_w, big_h = width * scale, height * scale

    background = tuple(int(v) for v in rng.integers(40, 230, size=3))
    canvas = Image.new("RGB", (big_w, big_h), background)
    draw = ImageDraw.Draw(canvas)

    unit = big_h
    face_h = unit * rng.uniform(*studio.face_height)
    face_w = face_h * rng.normal(cues["jaw"], 0.045)
    cx = big_w / 2 + rng.normal(0, studio.centre_jitter) * big_w
    cy = big_h / 2 + rng.normal(0, studio.centre_jitter) * big_h + 0.04 * unit
    tone = int(rng.integers(len(SKIN_TONES)))
    (traits if traits is not None else {})["skin_tone"] = tone
    skin = np.array(SKIN_TONES[tone]) * rng.uniform(0.9, 1.08)
    skin = tuple(int(v) for v in np.clip(skin, 0, 255))
    hair = tuple(int(v) for v in np.clip(np.array(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]) * rng.uniform(0.8, 1.2), 0, 255))

    hair_volume = face_w * rng.uniform(0.08, 0.2)
    if rng.random() < cues["long_hair"]:
        length = face_h * rng.uniform(0.45, 1.0)
        draw.rounded_rectangle(
            (cx - face_w / 2 - hair_volume, cy - face_h / 2 - hair_volume,
             cx + face_w / 2 + hair_volume, cy + length),
            radius=face_w * 0.4, fill=hair,
        )
    # The top of the head: a cap of hair for everyone, a bald one now and then.
    if rng.random() > 0.06:
        draw.ellipse(
            (cx - face_w / 2 - hair_volume * 0.7, cy - face_h / 2 - hair_volume,
             cx + face_w / 2 + hair_volume * 0.7, cy + face_h * 0.05),
            fill=hair,
        )
    # Neck and shoulders.
    draw.rectangle((cx - face_w * 0.2, cy + face_h * 0.3, cx + face_w * 0.2, big_h), fill=skin)
    shirt = tuple(int(v) for v in rng.integers(0, 255, size=3))
    draw.ellipse((cx - face_w * 1.3, cy + face_h * 0.62, cx + face_w * 1.3, cy + face_h * 1.9), fill=shirt)
    # Face: forehead starts under the hair line.
    draw.ellipse((cx - face_w / 2, cy - face_h * 0.42, cx + face_w / 2, cy + face_h / 2), fill=skin)

    if rng.random() < cues["beard"]:
        beard = tuple(int(v * rng.uniform(0.35, 0.75)) for v in hair)
        top = cy + face_h * rng.uniform(0.05, 0.2)
        draw.chord((cx - face_w / 2, top - face_h * 0.35, cx + face_w / 2, cy + face_h / 2 + face_h * 0.02),
                   start=0, end=180, fill=beard)

    eye_y = cy - face_h * 0.05
    eye_dx = face_w * rng.uniform(0.18, 0.24)
    eye_r = face_h * 0.035
    brow_w = max(1, int(scale * rng.normal(cues["brow"], 0.5)))
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse((ex - eye_r * 1.6, eye_y - eye_r, ex + eye_r * 1.6, eye_y + eye_r), fill=(245, 245, 245))
        draw.ellipse((ex - eye_r * 0.8, eye_y - eye_r * 0.8, ex + eye_r * 0.8, eye_y + eye_r * 0.8), fill=(40, 30, 25))
        brow_y = eye_y - face_h * rng.uniform(0.07, 0.1)
        draw.line((ex - eye_r * 2, brow_y + side * 0, ex + eye_r * 2, brow_y - eye_r * 0.3), fill=hair, width=brow_w * 2)
    nose = tuple(int(v * 0.8) for v in skin)
    draw.line((cx, eye_y + face_h * 0.05, cx - face_w * 0.04, cy + face_h * 0.15), fill=nose, width=scale * 2)
    lips = (190, 30, 50) if rng.random() < cues["red_lips"] else tuple(int(v * 0.72) for v in skin)
    mouth_y = cy + face_h * 0.28
    mouth_w = face_w * rng.uniform(0.14, 0.22)
    draw.ellipse((cx - mouth_w, mouth_y - face_h * 0.03, cx + mouth_w, mouth_y + face_h * 0.03), fill=lips)

    image = canvas.resize((width, height), Image.Resampling.BOX)
    if studio.rotation_degrees:
        angle = float(rng.uniform(-studio.rotation_degrees, studio.rotation_degrees))
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=background)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))

    pixels = np.asarray(image, dtype=np.float32)
    gain = 1 + rng.uniform(-studio.colour_cast, studio.colour_cast, size=3)
    pixels = pixels * gain * rng.uniform(0.8, 1.15) + rng.normal(0, rng.uniform(*studio.noise_sigma), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """Encode as baseline JPEG (deterministic for a given Pillow/libjpeg)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# --- the oddities of scraped data -------------------------------------------------------------

def grayscale_jpeg(image: Image.Image) -> bytes:
    return jpeg_bytes(image.convert("L"), 90)


def cmyk_jpeg(image: Image.Image) -> bytes:
    return jpeg_bytes(image.convert("CMYK"), 92)


def alpha_png(image: Image.Image) -> bytes:
    """A PNG whose corners are transparent, as cut-out portraits often are."""
    rgba = image.convert("RGBA")
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, image.size[0] - 1, image.size[1] - 1), fill=255)
    rgba.putalpha(mask)
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    return buffer.getvalue()


def exif_rotated_jpeg(image: Image.Image) -> bytes:
    """Pixels stored sideways with EXIF Orientation=6 (rotate 90 CW to show), as phones write them."""
    sideways = image.transpose(Image.Transpose.ROTATE_90)  # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def truncated_jpeg(image: Image.Image) -> bytes:
    """The first 40% of a JPEG: an interrupted download."""
    data = jpeg_bytes(image, 90)
    return data[: int(len(data) * 0.4)]


ODD_READABLE = {"gray.jpg": grayscale_jpeg, "cmyk.jpg": cmyk_jpeg, "alpha.png": alpha_png, "exif.jpg": exif_rotated_jpeg}


# --- the two layouts --------------------------------------------------------------------------

def _rng(seed: int, dataset: str, place: str, index: int) -> np.random.Generator:
    """The generator of one image: a function of its place alone, so no two images share one."""
    return np.random.default_rng([seed, zlib.crc32(f"{dataset}/{place}".encode()), index])


def _write_face(job: tuple) -> tuple[Path, str]:
    """Draw and write one face (a pool job: every argument is picklable); returns its path and group."""
    path, place, index, gender, studio, seed, dataset, oddity = job
    rng = _rng(seed, dataset, place, index)
    traits: dict = {}
    image = draw_face(rng, gender, studio, traits)
    if oddity is not None:
        path.write_bytes(ODD_READABLE[oddity](image))
    else:
        quality = int(rng.integers(studio.jpeg_quality[0], studio.jpeg_quality[1] + 1))
        path.write_bytes(jpeg_bytes(image, quality))
    return path, TONE_GROUPS[traits["skin_tone"]]


def _write_faces(folder: Path, prefix: str, count: int, gender: str, studio: Studio,
                 seed: int, dataset: str, oddities: list[str]) -> dict[Path, str]:
    """Write `count` faces, on every core, the first few in the odd encodings `oddities` names; returns each
    file's group. Each face has its own generator: the same files whatever the number of processes."""
    folder.mkdir(parents=True, exist_ok=True)
    place = f"{folder.parent.name}/{folder.name}/{prefix}"
    jobs = []
    for index in range(count):
        if index < len(oddities):
            stem, ext = oddities[index].rsplit(".", 1)
            jobs.append((folder / f"{prefix}{index:05d}_{stem}.{ext}", place, index, gender, studio, seed, dataset,
                         oddities[index]))
        else:
            jobs.append((folder / f"{prefix}{index:05d}.jpg", place, index, gender, studio, seed, dataset, None))
    workers = min(os.cpu_count() or 1, max(1, count // 200))
    if workers == 1:
        return dict(_write_face(job) for job in jobs)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return dict(pool.imap_unordered(_write_face, jobs, chunksize=64))


def _write_groups(root: Path, groups: dict[Path, str]) -> None:
    lines = ["path,group"] + [f"{path.relative_to(root).as_posix()},{group}" for path, group in sorted(groups.items())]
    (root / "groups.csv").write_text("\n".join(lines) + "\n")


def _junk(folder: Path) -> None:
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))


def _broken(folder: Path, prefix: str, rng_seed: int) -> None:
    image = draw_face(np.random.default_rng(rng_seed), "Male", TRAINVAL_STUDIO)
    (folder / f"{prefix}truncated.jpg").write_bytes(truncated_jpeg(image))
    (folder / f"{prefix}empty.jpg").write_bytes(b"")


def write_trainval(root: Path, params: SampleParams) -> None:
    """Lay out the training source: Train/, Test/ (Female, Male) and an unlabeled Validation/."""
    groups: dict[Path, str] = {}
    for split, per_class in (("Train", params.train_per_class), ("Test", params.val_per_class)):
        for gender in ("Female", "Male"):
            oddities = []
            if split == "Train":
                oddities = ["gray.jpg", "alpha.png"] if gender == "Female" else ["cmyk.jpg", "exif.jpg"]
            groups |= _write_faces(root / split / gender, "", per_class, gender, TRAINVAL_STUDIO,
                                   params.seed, "trainval", oddities)
    _write_groups(root, groups)
    _broken(root / "Test" / "Male", "x", params.seed)
    _junk(root / "Train" / "Female")
    _junk(root)
    unlabeled = root / "Validation"
    unlabeled.mkdir(parents=True, exist_ok=True)
    for index in range(params.unlabeled):
        rng = _rng(params.seed, "trainval", "Validation", index)
        gender = "Female" if rng.random() < 0.5 else "Male"
        (unlabeled / f"{index:05d}.jpg").write_bytes(jpeg_bytes(draw_face(rng, gender, TRAINVAL_STUDIO), 92))


def write_test(root: Path, params: SampleParams) -> None:
    """Lay out the cross-dataset test source: faces/man, faces/woman of varying sizes."""
    men = int(round(params.test_images * params.test_male_fraction))
    women = params.test_images - men
    faces = root / "faces"
    studio = replace(TEST_STUDIO, sizes=tuple(params.test_sizes))
    groups = _write_faces(faces / "man", "man_", men, "Male", studio, params.seed, "test", ["cmyk.jpg", "exif.jpg"])
    groups |= _write_faces(faces / "woman", "woman_", women, "Female", studio, params.seed, "test",
                           ["gray.jpg", "alpha.png"])
    _write_groups(root, groups)
    _broken(faces / "man", "man_", params.seed + 1)
    _junk(faces / "woman")
    _junk(root)


WRITERS = {"trainval": write_trainval, "test": write_test}


def generate(name: str, root: Path, params: SampleParams) -> None:
    """Write the sample version of dataset `name` ('trainval' or 'test') into folder `root`."""
    try:
        writer = WRITERS[name]
    except KeyError:
        raise UserError(f"no sample for dataset '{name}'; expected one of {sorted(WRITERS)}") from None
    writer(Path(root), params)
