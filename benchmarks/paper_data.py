#!/usr/bin/env python
"""AVA parse + image-validation throughput on a synthetic AVA root (AVA.txt + images/<id>.jpg):

    python benchmarks/paper_data.py [--images 2000] [--size 256x192] [--workers 1 2] [--out benchmarks/results/paper_data.json]

Times the streaming AVA.txt parse and a full decode check of every image (what `data.validate_all`
does) with each worker count; the stage itself only checks the images its subsets need.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_root(root: Path, n: int, size: tuple[int, int], seed: int = 0) -> None:
    """n photo-like JPEGs (smooth gradient + noise, so they compress and decode like photos) and AVA.txt."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    lines = []
    for k in range(n):
        base = np.stack([(xx * rng.uniform(0.3, 1)) % 256, (yy * rng.uniform(0.3, 1)) % 256, (xx + yy) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
        image_id = str(700000 + k)
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.jpg", quality=85)
        counts = rng.multinomial(int(rng.integers(80, 400)), np.full(10, 0.1))
        lines.append(f"{k + 1} {image_id} {' '.join(map(str, counts))} 0 0 {k % 50}\n")
    (root / "AVA.txt").write_text("".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", default="256x192", help="WxH of the synthetic JPEGs")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/paper_data.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from aesthetic_llm.data.ava_labels import ImageChecker, Item, parse_ava

    size = tuple(int(v) for v in args.size.split("x"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "AVA"
        t0 = time.perf_counter()
        make_root(root, args.images, size)
        gen_s = time.perf_counter() - t0
        mb = sum(f.stat().st_size for f in (root / "images").iterdir()) / 1e6
        for workers in args.workers:
            t0 = time.perf_counter()
            items = [r for r in parse_ava(root / "AVA.txt", root / "images") if isinstance(r, Item)]
            parse_s = time.perf_counter() - t0
            with ImageChecker(workers) as checker:  # pool start-up counted: the stage pays it too
                t1 = time.perf_counter()
                bad = [r for r in checker.check([it.path for it in items]) if r is not None]
                validate_s = time.perf_counter() - t1
            total = time.perf_counter() - t0
            assert len(items) == args.images and not bad
            results.append(
                {
                    "workers": workers,
                    "parse_s": round(parse_s, 4),
                    "lines_per_s": round(len(items) / parse_s),
                    "validate_s": round(validate_s, 3),
                    "images_per_s": round(len(items) / validate_s, 1),
                    "total_s": round(total, 3),
                }
            )
    base = results[0]["images_per_s"]
    doc = {
        "benchmark": "paper_data",
        "images": args.images,
        "image_size": args.size,
        "dataset_mb": round(mb, 1),
        "generate_s": round(gen_s, 2),
        "results": results,
        "speedup": {str(r["workers"]): round(r["images_per_s"] / base, 2) for r in results},
        # Load from other processes at the end of the run: on a shared 2-core box it caps any speed-up.
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    table = [
        f"Synthetic AVA root: {args.images} JPEGs of {args.size} ({mb:.1f} MB), {os.cpu_count()} CPUs "
        f"(1-min load average {doc['machine']['load_avg_1m']} at the end).\n",
        "| workers | parse (lines/s) | validate (images/s) | parse + validate (s) | speed-up |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['workers']} | {r['lines_per_s']:,} | {r['images_per_s']:.0f} | {r['total_s']:.2f} "
        f"| {doc['speedup'][str(r['workers'])]}x |"
        for r in results
    ]
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
