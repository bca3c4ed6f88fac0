#!/usr/bin/env python
"""Are the bits of a training step the same on other CPUs? And what does pinning cost?

    python benchmarks/numerics.py [--cpus native Haswell-v4 EPYC-Rome-v1] [--out benchmarks/results/numerics.json]

For each `compute.cpu_numerics` mode, one forward + backward of the committed demo base on a fixed batch
(8 images, 2 threads) is hashed (sha256 of every gradient) on this CPU and under qemu-user emulating other
x86-64 CPUs (Debian's qemu-user; emulated CPUs have AVX2 but no AVX-512, so they take the kernels an
AVX2-only machine takes, with that CPU's vendor string for MKL's dispatch). Same hash = same bits. The
speed of each mode is the mean of 20 optimizer steps on this CPU, as a ratio to `native` within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without `make setup` too

from aesthetic_llm.numerics import CPU_NUMERICS, numerics_env  # noqa: E402

_STEP = r"""
import hashlib, json, sys, time
import numpy as np, torch
from PIL import Image
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration
base = sys.argv[1]
torch.manual_seed(0)
proc = AutoProcessor.from_pretrained(base)
model = Qwen2VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
rng = np.random.default_rng(0)
images = [Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(8)]
turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Rate this photo."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Analysis: sharp, well exposed. Rating Level: 7"}]}]
batch = proc(text=[proc.apply_chat_template(turn, tokenize=False)] * 8, images=images, return_tensors="pt")
model.train()
out = model(**batch, labels=batch["input_ids"])
out.loss.backward()
h = hashlib.sha256()
for _, p in sorted(model.named_parameters()):
    if p.grad is not None:
        h.update(p.grad.detach().numpy().tobytes())
seconds = None
if len(sys.argv) > 2:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for i in range(23):
        if i == 3:
            t0 = time.perf_counter()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        opt.step()
        opt.zero_grad()
    seconds = (time.perf_counter() - t0) / 20
print(json.dumps({"grad_sha256": h.hexdigest(), "loss": out.loss.item(), "capability": torch.backends.cpu.get_cpu_capability(), "step_s": seconds}))
"""


def run(mode: str, cpu: str, timed: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    env.update(numerics_env(mode, 2))
    cmd = [sys.executable, "-c", _STEP, str(ROOT / "pretrained/tiny-qwen2vl-base")] + (["timed"] if timed else [])
    if cpu != "native":
        cmd = ["qemu-x86_64", "-cpu", cpu, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"mode": mode, "cpu": cpu, "error": proc.stderr.strip().splitlines()[-1:]}
    return {"mode": mode, "cpu": cpu, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", nargs="+", default=["native", "Haswell-v4", "Cascadelake-Server-v1", "EPYC-Rome-v1"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/numerics.json")
    args = ap.parse_args()
    if any(c != "native" for c in args.cpus) and not shutil.which("qemu-x86_64"):
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user (or --cpus native)")
    rows = [run(mode, cpu, timed=cpu == "native") for mode in CPU_NUMERICS for cpu in args.cpus]
    for r in rows:
        print(json.dumps(r), flush=True)
    native_step = next((r["step_s"] for r in rows if r["mode"] == "native" and r["cpu"] == "native"), None)
    result = {"host_cpu": platform.processor() or platform.machine(), "rows": rows, "same_bits_on_every_cpu": {}}
    for mode in CPU_NUMERICS:
        hashes = {r.get("grad_sha256") for r in rows if r["mode"] == mode}
        result["same_bits_on_every_cpu"][mode] = len(hashes) == 1 and None not in hashes
    lines = [
        "| mode | " + " | ".join(args.cpus) + " | same bits everywhere | step time vs native |",
        "|---" * (len(args.cpus) + 3) + "|",
    ]
    for mode in CPU_NUMERICS:
        cells = [
            next((r.get("grad_sha256", "error")[:10] for r in rows if r["mode"] == mode and r["cpu"] == c), "")
            for c in args.cpus
        ]
        step = next((r["step_s"] for r in rows if r["mode"] == mode and r["cpu"] == "native"), None)
        ratio = f"{step / native_step:.2f}x" if step and native_step else "n/a"
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {result['same_bits_on_every_cpu'][mode]} | {ratio} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
