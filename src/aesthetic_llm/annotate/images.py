"""Images as sent (resized JPEG data URLs) and the critic's measured properties, in a pool process."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from pathlib import Path

from PIL import Image

from aesthetic_llm.measure import measure


def _data_url(im: Image.Image, max_side: int) -> str:
    if max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def encode_image(path: str | Path, max_side: int) -> str:
    """The data URL sent for an image: RGB, longest side <= max_side, JPEG q90 (deterministic)."""
    with Image.open(path) as im:
        return _data_url(im.convert("RGB"), max_side)


def _exit_with_parent(ppid: int) -> None:
    """Pool initializer: a SIGKILLed annotator must not leave its measuring process behind."""

    def watch() -> None:
        while os.getppid() == ppid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def measure_props(path: str | Path) -> dict[str, float]:
    with Image.open(path) as im:
        return measure(im).as_dict()
