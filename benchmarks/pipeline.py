#!/usr/bin/env python
"""Time every DVC stage of the pipeline (wall time and peak RSS) in a scratch copy of the repo.

    python benchmarks/pipeline.py [--scale demo|small] [--out benchmarks/results/pipeline.json]

`demo` uses params.yaml as committed (what `make reproduce` runs); `small` the end-to-end test's sizes.
Stages run in dvc.yaml order, each as its own process, exactly as `dvc repro` would run its cmd.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Runs a command and reports the peak RSS of its process tree (the largest single process), in KiB.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def shrink(params: dict) -> dict:
    from tests.conftest import TINY_BUILD

    params["model"]["build"] = dict(TINY_BUILD)
    params["data"].update(image_size=56, crops_per_source={"train": 3, "val": 2, "test": 6, "unseen": 2})
    for stage in ("sft", "dpo"):
        params[stage].update(num_train_epochs=1, per_device_train_batch_size=4)
    params["score"].update(max_new_tokens=12)
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=("demo", "small"), default="demo")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pipeline.json")
    args = ap.parse_args()

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.scale == "small":
        params = shrink(params)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        ws = Path(tmp)
        for name in ("src", "scripts", "llamafactory_configs"):
            shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for name, stage in stages.items():
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _MEASURE, *stage["cmd"].split()], cwd=ws, env=env, capture_output=True, text=True
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
                raise SystemExit(f"stage {name} failed")
            peak = next(
                (int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")), 0
            )
            results.append({"stage": name, "seconds": round(wall, 2), "peak_rss_mb": round(peak / 1024, 1)})
            print(f"{name:10s} {wall:8.1f} s  {peak / 1024:8.0f} MB", flush=True)
    total = round(sum(r["seconds"] for r in results), 1)
    doc = {
        "benchmark": "pipeline",
        "scale": args.scale,
        "total_seconds": total,
        "stages": results,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    table = ["| stage | seconds | peak RSS (MB) |", "|---|---|---|"]
    table += [f"| {r['stage']} | {r['seconds']} | {r['peak_rss_mb']} |" for r in results]
    table.append(f"| **total** | **{total}** | |")
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
