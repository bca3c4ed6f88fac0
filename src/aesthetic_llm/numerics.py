"""CPU numerics pinned per run (kernel set, BLAS branch, threads), and a record of what a result depends on.

A float result depends on more than code, params and data: PyTorch picks its vectorised kernels by CPU
feature (AVX-512 or AVX2), MKL picks GEMM code paths by CPU vendor and generation, oneDNN (convolution,
GELU) JIT-compiles for the widest ISA it finds, and every parallel reduction splits by thread count.
Training amplifies a last-bit difference into a different model. Pinning these makes a rerun on the
same machine bit-identical and, in `portable` mode, a run on any x86-64 CPU with AVX2 as well
(checked under emulated Intel and AMD CPUs by benchmarks/numerics.py).

Modes (`compute.cpu_numerics`):
- portable: AVX2 kernels, MKL's vendor-neutral branch (MKL_CBWR=COMPATIBLE), oneDNN capped at AVX2.
- vendor: AVX2 kernels and MKL's AVX2 branch: identical across CPUs of one vendor; faster GEMMs.
- native: whatever the machine offers (fastest; bits differ between CPU generations).

The variables must be in place before the first tensor operation of the process (PyTorch resolves its
kernel set lazily, MKL and oneDNN read theirs on first use); child processes inherit them.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from aesthetic_llm.errors import UserError

CPU_NUMERICS = ("portable", "vendor", "native")
_PINS = {
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "vendor": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "native": {},
}
_PINNED_NAMES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# CPU flags that change which kernels run (recorded, not used for decisions).
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def numerics_env(mode: str, threads: int) -> dict[str, str]:
    """The environment variables that pin `mode` with `threads` threads."""
    if mode not in CPU_NUMERICS:
        raise UserError(f"compute.cpu_numerics: {mode!r} is not one of {', '.join(CPU_NUMERICS)}")
    if threads < 1:
        raise UserError(f"compute.threads: expected an integer >= 1, got {threads}")
    env = {name: str(threads) for name in _THREAD_VARS}
    env.update(_PINS[mode])
    return env


def pin(mode: str, threads: int) -> dict[str, str]:
    """Pin this process (and its children) to `mode`; refuse when tensors already ran on other kernels."""
    env = numerics_env(mode, threads)
    os.environ.update(env)
    for name in _PINNED_NAMES:
        if name not in env:
            os.environ.pop(name, None)  # native: nothing inherited from a pinned parent
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        want = env.get("ATEN_CPU_CAPABILITY")
        got = torch.backends.cpu.get_cpu_capability()
        if want and got.lower() != want:
            raise UserError(f"compute.cpu_numerics {mode}: torch already runs {got} kernels in this process")
    return env


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "model": platform.processor() or None}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(errors="replace")
        for key, field in (("model", "model name"), ("vendor", "vendor_id")):
            m = re.search(rf"^{field}\s*:\s*(.+)$", text, re.MULTILINE)
            if m:
                info[key] = m.group(1).strip()
        m = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        flags = set(m.group(1).split()) if m else set()
        info["flags"] = [f for f in _FLAGS if f in flags]
    info["logical_cpus"] = os.cpu_count()
    return info


def fingerprint() -> dict[str, Any]:
    """What this process's float results depend on besides code, params and data."""
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", config)
    dnn = re.search(r"MKL-DNN v([\w.]+)", config)
    return {
        "cpu": _cpu(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "blas": f"MKL {mkl.group(1)}" if mkl else None,
        "onednn": dnn.group(1) if dnn else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "env": {k: os.environ[k] for k in _PINNED_NAMES + _THREAD_VARS if k in os.environ},
    }
