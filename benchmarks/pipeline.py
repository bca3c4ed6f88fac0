#!/usr/bin/env python
"""Time the pipeline as a new user runs it: a fresh `git clone` of this checkout's HEAD, then every DVC stage
(seeds expanded: sft@42, sft@43, ...) in `dvc repro`'s order, each timed with its peak RSS.

    python benchmarks/pipeline.py [--scale demo|small] [--compare reports/metrics.json] [--out benchmarks/results/pipeline.json]

`demo` runs params.yaml as committed (what `make reproduce` runs); `small` the sizes of configs/small.yaml (the tests' sizes). The
result has per-stage seconds, per training seed the sum of its stages, the shared stages' sum and the total.
With --compare, the clone's metrics.json is compared with another run's: identical bytes, else the largest
difference of any number in it (a rerun of the same commit on the same machine should be identical).
Run it on an idle machine: 2-thread training slows many-fold beside any other CPU-bound process.
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

import yaml

from aesthetic_llm.params import SMALL_OVERLAY, shrunk

ROOT = Path(__file__).resolve().parents[1]

# Runs a command and reports the peak RSS of its process tree (the largest single process), in KiB.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


_ORDER = (
    "import networkx as nx\n"
    "from dvc.repo import Repo\n"
    "g = Repo('.').index.graph  # edges point from a stage to the stages it depends on\n"
    "print('\\n'.join(s.addressing for s in reversed(list(nx.topological_sort(g))) if getattr(s, 'cmd', None)))\n"
)


def stage_order(ws: Path, env: dict[str, str]) -> list[str]:
    """The pipeline's stages (foreach entries expanded) in an order `dvc repro` may run them."""
    out = subprocess.run([sys.executable, "-c", _ORDER], cwd=ws, env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def numbers_diff(a: object, b: object) -> float:
    """The largest absolute difference between numbers at the same place in two JSON trees (inf: shapes differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((numbers_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return float("inf")
        return max((numbers_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float) or not isinstance(b, int | float):
        return 0.0 if a == b else float("inf")
    return abs(float(a) - float(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=("demo", "small"), default="demo")
    ap.add_argument("--compare", type=Path, help="another run's reports/metrics.json")
    ap.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pipeline.json")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        ws = args.keep or Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(ws)], check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True).stdout.strip()
        env["PYTHONPATH"] = str(ws / "src")  # the clone's code, whatever .venv's editable install points at
        if args.scale == "small":
            params = shrunk(yaml.safe_load((ws / "params.yaml").read_text()), ws / SMALL_OVERLAY)
            (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        t_all = time.perf_counter()
        for name in stage_order(ws, env):
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", _MEASURE, "dvc", "repro", "--single-item", name]
            proc = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
                raise SystemExit(f"stage {name} failed")
            peak = next((int(s.split()[1]) for s in proc.stderr.splitlines() if s.startswith("PEAK_RSS_KB")), 0)
            results.append({"stage": name, "seconds": wall, "peak_rss_mb": peak / 1024})
            print(f"{name:18s} {wall:8.1f} s  {peak / 1024:8.0f} MB", flush=True)
        total = time.perf_counter() - t_all
        metrics = (ws / "reports/metrics.json").read_bytes()
    per_seed: dict[str, float] = {}
    for r in results:
        if "@" in r["stage"]:
            seed = r["stage"].split("@", 1)[1]
            per_seed[seed] = per_seed.get(seed, 0.0) + r["seconds"]
    shared = sum(r["seconds"] for r in results if "@" not in r["stage"])
    doc = {
        "benchmark": "pipeline",
        "scale": args.scale,
        "commit": head,
        "total_seconds": total,
        "shared_seconds": shared,
        "per_seed_seconds": per_seed,
        "stages": results,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.compare:
        other = args.compare.read_bytes()
        doc["compare"] = {
            "with": str(args.compare),
            "identical_bytes": other == metrics,
            "max_abs_diff": numbers_diff(json.loads(metrics), json.loads(other)),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    table = ["| stage | seconds | peak RSS (MB) |", "|---|---|---|"]
    table += [f"| {r['stage']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |" for r in results]
    table.append(f"| shared stages | {shared:.1f} | |")
    table += [f"| seed {s} (its stages) | {v:.1f} | |" for s, v in per_seed.items()]
    table.append(f"| **total** ({len(per_seed)} seeds) | **{total:.1f}** | |")
    if args.compare:
        c = doc["compare"]
        table.append(
            f"\nmetrics.json vs {c['with']}: identical bytes {c['identical_bytes']}, max |diff| {c['max_abs_diff']}"
        )
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
