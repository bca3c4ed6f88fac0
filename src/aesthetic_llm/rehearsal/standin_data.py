"""Stand-in AVA and AADB roots for the paper rehearsal: the real file layouts, small, learnable, and damaged.

Images are 112-px crops of the real photos shipped in installed packages (demo_data.SOURCES), each degraded
with a known strength (demo_data.make_sample): quality q in [0, 1]. AVA rows carry vote counts drawn around
MOS 2 + 7q (AVA's scores sit mostly between 3 and 8); AADB lists carry the score q (AADB's [0, 1] scale).
AADB uses photos AVA never sees, so `unseen` is unseen content. Both roots get damaged rows and images of
every kind paper_data.py must survive; each planted problem is returned with its file, line and kind, so a
test can check that stats.json lists exactly these.

    AVA/AVA.txt                 index image_id c1..c10 tag1 tag2 challenge_id
    AVA/images/<id>.jpg
    AVA/generic_test.jpgl       the official test list (ids, one a line)
    AADB/imgListFiles_label/imgList{Train,Test}Regression_score.txt   <name> <score>
    AADB/datasetImages_originalSize/<name>
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aesthetic_llm.data.demo import SEEN_DEGRADATIONS, UNSEEN_DEGRADATIONS, load_sources, make_sample

IMAGE_SIZE = 112
AADB_SOURCES = ("astronaut", "flower", "hubble")  # the demo's unseen photos: never in the AVA stand-in


@dataclass(frozen=True)
class Planted:
    """A damaged row or image put into a stand-in root on purpose."""

    source: str  # ava | aadb
    file: str  # the label file (malformed/duplicate rows) or the image (missing/corrupt)
    line: int  # 1-based line of the label file
    kind: str  # malformed | duplicate | missing | corrupt
    image_id: str
    what: str


# AVA.txt line -> damage. Label damage: the row is unusable; image damage: the row is fine, its image is not.
AVA_DAMAGE = {
    5: "bad_columns",
    11: "non_numeric",
    17: "zero_votes",
    23: "duplicate",
    29: "missing",
    37: "garbage",
    43: "truncated",
    51: "missing",
    59: "truncated",
}
AADB_DAMAGE = {3: "bad_columns", 6: "non_numeric", 8: "out_of_range", 10: "missing", 12: "garbage", 14: "truncated"}
KIND = {
    "bad_columns": "malformed",
    "non_numeric": "malformed",
    "zero_votes": "malformed",
    "out_of_range": "malformed",
    "duplicate": "duplicate",
    "missing": "missing",
    "garbage": "corrupt",
    "truncated": "corrupt",
}


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def damage_image(data: bytes, how: str) -> bytes:
    """Corrupt JPEG bytes: `garbage` (a JPEG marker, then noise) or `truncated` (the scan cut in half)."""
    if how == "garbage":
        return b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(range(256)) * 2
    return data[: len(data) // 2]


def ava_votes(mos: float, rng: np.random.Generator) -> list[int]:
    """AVA-like counts for scores 1..10: a few hundred voters around `mos`, spread like AVA's (SD ~1.4)."""
    p = np.exp(-0.5 * ((np.arange(1, 11) - mos) / rng.uniform(1.1, 1.7)) ** 2)
    return [int(c) for c in rng.multinomial(int(rng.integers(80, 260)), p / p.sum())]


def _photos(exclude: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> list[tuple[str, Image.Image]]:
    views = load_sources()
    return [(n, im) for n, ims in sorted(views.items()) for im in ims if n not in exclude and (not only or n in only)]


def make_ava_root(root: Path, n_rows: int = 84, n_test: int = 24, seed: int = 0) -> list[Planted]:
    """Write the AVA stand-in (n_rows label lines, the first n_test good-or-damaged ids on the test list)."""
    rng = np.random.default_rng([seed, 0])
    photos = _photos(exclude=AADB_SOURCES)
    (root / "images").mkdir(parents=True, exist_ok=True)
    labels = root / "AVA.txt"
    lines, test_ids, planted = [], [], []
    for k in range(1, n_rows + 1):
        image_id = str(953000 + 17 * k)
        name, photo = photos[int(rng.integers(len(photos)))]
        sample = make_sample(image_id, name, photo, SEEN_DEGRADATIONS, IMAGE_SIZE, rng)
        q = (sample.mos - 1.0) / 9.0
        votes = ava_votes(2.0 + 7.0 * q, rng)
        tags = f"{int(rng.integers(0, 60))} {int(rng.integers(0, 60))} {int(rng.integers(1, 1400))}"
        damage = AVA_DAMAGE.get(k)
        row_id = image_id
        if damage == "duplicate":
            row_id = lines[0].split()[1]  # the first row's id again
        if damage == "bad_columns":
            lines.append(f"{k} {image_id} {' '.join(map(str, votes[:9]))} {tags}\n")
        elif damage == "non_numeric":
            lines.append(f"{k} {image_id} {' '.join(map(str, votes[:4]))} n/a {' '.join(map(str, votes[5:]))} {tags}\n")
        elif damage == "zero_votes":
            lines.append(f"{k} {image_id} {' '.join(['0'] * 10)} {tags}\n")
        else:
            lines.append(f"{k} {row_id} {' '.join(map(str, votes))} {tags}\n")
        data = jpeg(sample.image)
        if damage in ("garbage", "truncated"):
            data = damage_image(data, damage)
        if damage not in ("missing", "duplicate"):
            (root / "images" / f"{image_id}.jpg").write_bytes(data)
        if damage is not None:
            where = labels if KIND[damage] in ("malformed", "duplicate") else root / "images" / f"{row_id}.jpg"
            planted.append(Planted("ava", str(where), k, KIND[damage], row_id, damage))
        if k <= n_test and damage != "duplicate":
            test_ids.append(image_id)
    labels.write_text("".join(lines), encoding="utf-8")
    (root / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in test_ids), encoding="utf-8")
    return planted


def make_aadb_root(root: Path, n_test: int = 18, n_train: int = 4, seed: int = 0) -> list[Planted]:
    """Write the AADB stand-in: Test (the unseen split, with damage) and a small Train list (not used)."""
    rng = np.random.default_rng([seed, 1])
    photos = _photos(only=AADB_SOURCES)
    label_dir = root / "imgListFiles_label"
    image_dir = root / "datasetImages_originalSize"
    label_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    planted = []
    for which, count in (("Test", n_test), ("Train", n_train)):
        labels = label_dir / f"imgList{which}Regression_score.txt"
        lines = []
        for k in range(1, count + 1):
            name = f"farm1_{4100 + 7 * k}_{which.lower()}{k:03d}_b.jpg"
            src, photo = photos[int(rng.integers(len(photos)))]
            sample = make_sample(name, src, photo, SEEN_DEGRADATIONS + UNSEEN_DEGRADATIONS, IMAGE_SIZE, rng)
            score = round((sample.mos - 1.0) / 9.0, 4)
            damage = AADB_DAMAGE.get(k) if which == "Test" else None
            if damage == "bad_columns":
                lines.append(f"{name} {score} 1\n")
            elif damage == "non_numeric":
                lines.append(f"{name} high\n")
            elif damage == "out_of_range":
                lines.append(f"{name} {score + 1.5}\n")
            else:
                lines.append(f"{name} {score}\n")
            data = jpeg(sample.image)
            if damage in ("garbage", "truncated"):
                data = damage_image(data, damage)
            if damage != "missing":
                (image_dir / name).write_bytes(data)
            if damage is not None:
                where = labels if KIND[damage] == "malformed" else image_dir / name
                planted.append(Planted("aadb", str(where), k, KIND[damage], f"aadb_{Path(name).stem}", damage))
        labels.write_text("".join(lines), encoding="utf-8")
    return planted


def make_roots(inputs: Path, seed: int = 0) -> dict[str, Any]:
    """Both stand-in roots under `inputs` (AVA/, AADB/); returns their paths and the planted problems."""
    planted = make_ava_root(inputs / "AVA", seed=seed) + make_aadb_root(inputs / "AADB", seed=seed)
    return {"ava": str(inputs / "AVA"), "aadb": str(inputs / "AADB"), "planted": [asdict(p) for p in planted]}
