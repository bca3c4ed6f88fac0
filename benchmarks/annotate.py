#!/usr/bin/env python
"""API annotation throughput against the fault server in fixed-latency mode (no faults): images/s at each
concurrency, the ideal linear speed-up over concurrency 1 and the achieved fraction of it, and the client's
overhead per image (wall time per image minus the server's latency, at concurrency 1).

    python benchmarks/annotate.py [--latency 0.2] [--concurrency 1 4 16 64] [--out benchmarks/results/annotate.json]

The server runs in its own process, so its work does not share the client's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aesthetic_llm.annotate.api import annotate_api  # noqa: E402
from aesthetic_llm.annotate.api_config import ApiConfig, load_items  # noqa: E402
from aesthetic_llm.annotate.images import encode_image  # noqa: E402
from aesthetic_llm.io_utils import atomic_write_text, write_csv  # noqa: E402


def make_manifest(dir_: Path, n: int, size: tuple[int, int]) -> Path:
    rows = []
    for i in range(n):
        path = dir_ / f"img{i:04d}.jpg"
        # Photo-like content (smooth colour fields + mild grain), so payloads have a realistic JPEG size.
        rng = np.random.default_rng(i)
        low = Image.fromarray((rng.random((6, 8, 3)) * 255).astype("uint8")).resize(size, Image.Resampling.BICUBIC)
        pixels = np.asarray(low, dtype=np.float32) + rng.normal(0, 4, (size[1], size[0], 3))
        Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(path, quality=90)
        rows.append({"image_id": f"img{i:04d}", "path": str(path), "mos": 1 + 9 * i / n})
    manifest = dir_ / "manifest.csv"
    write_csv(manifest, rows, ["image_id", "path", "mos"])
    return manifest


def start_server(latency: float) -> tuple[subprocess.Popen, str, str]:
    cmd = [sys.executable, "-m", "aesthetic_llm.rehearsal.fault_server", "--latency", str(latency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info["url"], info["api_key"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--image-size", type=int, nargs=2, default=[512, 384], help="width height of the test images")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "annotate.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    import openai  # noqa: F401  -- a one-time cost (about a second), kept out of the first timed run

    import_s = time.perf_counter() - t0
    proc, url, key = start_server(args.latency)
    os.environ["BENCH_API_KEY"] = key
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for k in args.concurrency:
                n = 64 if k <= 4 else 128  # long enough runs at high concurrency: several waves of requests
                work = Path(tmp) / f"c{k}"
                work.mkdir()
                manifest = make_manifest(work, n, tuple(args.image_size))
                cfg = ApiConfig(base_url=url, model="gpt-4o-mini", key_env="BENCH_API_KEY", concurrency=k)
                items = load_items(manifest, cfg)
                t0 = time.perf_counter()
                s = annotate_api(items, work / "out.jsonl", cfg, emit=lambda m: None)
                wall = time.perf_counter() - t0
                assert s["done"] == n and s["failed"] == 0 and s["requests"] == n, s
                payload = sum(len(encode_image(it.path, cfg.max_side)) for it in items[:8]) / 8
                rows.append(
                    {
                        "concurrency": k,
                        "images": n,
                        "wall_s": round(wall, 3),
                        "images_per_s": n / wall,
                        "mean_data_url_kb": round(payload / 1024, 1),
                    }
                )
    finally:
        proc.terminate()
        proc.wait(10)

    base = next((r["images_per_s"] for r in rows if r["concurrency"] == 1), None)
    for r in rows:
        k = r["concurrency"]
        if base:  # ideal linear speed-up: k times the measured concurrency-1 rate
            r["speedup_vs_c1"] = round(r["images_per_s"] / base, 2)
            r["ideal_speedup"] = k
            r["ratio_to_linear"] = round(r["images_per_s"] / base / k, 3)
        r["latency_bound_images_per_s"] = round(k / args.latency, 2)  # k requests per latency period
        r["fraction_of_latency_bound"] = round(r["images_per_s"] / r["latency_bound_images_per_s"], 3)
        r["images_per_s"] = round(r["images_per_s"], 2)
    c1 = next((r for r in rows if r["concurrency"] == 1), None)
    result = {
        "benchmark": "api annotation throughput (fault server, fixed latency, no faults)",
        "latency_s": args.latency,
        "image_size": args.image_size,
        "client_overhead_ms_per_image_c1": round((c1["wall_s"] / c1["images"] - args.latency) * 1000, 2)
        if c1
        else None,
        "goal": ">= 0.8 x ideal up to concurrency 16",
        "goal_met": all(r.get("ratio_to_linear", 0) >= 0.8 for r in rows if r["concurrency"] <= 16),
        "openai_import_s": round(import_s, 3),
        "rows": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    lines = [
        "# API annotation throughput",
        "",
        f"Fault server in fixed-latency mode ({args.latency * 1000:.0f} ms per answer, no faults), separate process; "
        f"{args.image_size[0]}x{args.image_size[1]} JPEG inputs; {os.cpu_count()} CPUs. "
        "Ideal linear speed-up = concurrency x the concurrency-1 rate; latency bound = concurrency / latency. "
        "Generated by `python benchmarks/annotate.py`.",
        "",
        "| concurrency | images | wall (s) | images/s | speed-up vs c=1 | ideal | ratio | latency bound | fraction |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['images']} | {r['wall_s']} | {r['images_per_s']} | "
            f"{r.get('speedup_vs_c1', '')} | {r.get('ideal_speedup', '')} | {r.get('ratio_to_linear', '')} | "
            f"{r['latency_bound_images_per_s']} | {r['fraction_of_latency_bound']} |"
        )
    lines += [
        "",
        f"Client overhead per image at concurrency 1: {result['client_overhead_ms_per_image_c1']} ms "
        f"(encode + measure + request + validate + fsynced append); mean data URL {rows[0]['mean_data_url_kb']} KB; "
        f"importing the openai client once: {result['openai_import_s']} s (not in the timings).",
        f"Goal {result['goal']}: {'met' if result['goal_met'] else 'NOT met'}.",
        "",
    ]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
