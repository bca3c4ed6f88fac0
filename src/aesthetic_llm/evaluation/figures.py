"""Figures of reports/report.md: training curves, checkpoint selection, scatter and calibration plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aesthetic_llm.evaluation.tables import MODELS
from aesthetic_llm.io_utils import read_csv


def _read_log(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    cols: dict[str, list[float]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if v not in ("", None):
                    cols.setdefault(k, []).append((float(row["step"]), float(v)))  # type: ignore[arg-type]
    return cols  # type: ignore[return-value]


def _pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported late: only the report stage draws)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _split_rows(pred_csvs: list[Path], split: str) -> tuple[list[dict[str, str]], list[str]]:
    """Prediction rows of one split from every file, and the models present in it (table order first)."""
    rows = [
        r
        for path in pred_csvs
        for r in read_csv(path, required=("model", "split", "pred", "mos"))
        if r["split"] == split
    ]
    present = {r["model"] for r in rows}
    return rows, [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def plot_curves(train_dirs: dict[int, Path], fig_dir: Path) -> list[str]:
    """Training curves, one line per training seed."""
    plt = _pyplot()
    made = []
    panels = {
        "sft_loss.png": ("sft", ["loss", "eval_loss"], "SFT loss"),
        "dpo_loss.png": ("dpo", ["loss"], "DPO loss"),
        "dpo_reward_accuracy.png": ("dpo", ["rewards/accuracies", "rewards/margins"], "DPO rewards"),
    }
    for name, (stage, keys, title) in panels.items():
        logs = {seed: _read_log(d / f"{stage}_log.csv") for seed, d in train_dirs.items()}
        if not any(k in cols for cols in logs.values() for k in keys):
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for i, k in enumerate(keys):
            for seed, cols in logs.items():
                if k in cols:
                    xs, ys = zip(*cols[k], strict=True)
                    ax.plot(
                        xs,
                        ys,
                        marker="o" if k == "eval_loss" else None,
                        ms=3,
                        color=f"C{i}",
                        alpha=0.6,
                        label=f"{k} (seed {seed})",
                    )
        ax.set_xlabel("step")
        ax.set_title(f"{title}, {len(logs)} seed(s)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(fig_dir / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def plot_scatter(pred_csvs: list[Path], fig_dir: Path, split: str = "test") -> list[str]:
    """Prediction vs MOS per model (the base and the first training seed's models)."""
    plt = _pyplot()
    rows, models = _split_rows(pred_csvs, split)
    if not models:
        return []
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.3), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        rs = [r for r in rows if r["model"] == m]
        mos = np.array([float(r["mos"]) for r in rs])
        pred = np.array([float(r["pred"]) for r in rs])
        text = np.array([float(r["text_level"]) if r.get("text_level") else np.nan for r in rs])
        ax.scatter(mos, pred, s=8, alpha=0.7, label="weighted score")
        if not np.all(np.isnan(text)):
            ax.scatter(mos, text, s=8, alpha=0.4, marker="x", label="text level")
        ax.plot([1, 10], [1, 10], "k--", lw=0.8)
        ax.set(xlim=(0.5, 10.5), ylim=(0.5, 10.5), xlabel="true MOS", ylabel="prediction", title=f"{m} ({split})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"scatter_{split}.png"
    fig.savefig(fig_dir / name, dpi=110)
    plt.close(fig)
    return [name]


def plot_selection(train_dirs: dict[int, Path], fig_dir: Path) -> list[str]:
    """Val SRCC of every checkpoint, one line per seed, with the chosen step marked: the choice is made on it."""
    plt = _pyplot()
    made = []
    for stage in ("qalign_style", "sft", "dpo"):
        curves = {}
        for seed, d in train_dirs.items():
            path = d / f"{stage}_selection.csv"
            if path.exists():
                sel = [r for r in read_csv(path) if r["val_srcc"] not in ("", "None")]
                if sel:
                    curves[seed] = ([int(r["step"]) for r in sel], [float(r["val_srcc"]) for r in sel])
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for i, (seed, (steps, vals)) in enumerate(curves.items()):
            best = max(range(len(vals)), key=lambda j: (vals[j], -steps[j]))
            ax.plot(steps, vals, "s-", color=f"C{i}", ms=3, label=f"seed {seed} (chosen: step {steps[best]})")
            ax.plot([steps[best]], [vals[best]], "*", color=f"C{i}", ms=10)
        ax.set_xlabel("step")
        ax.set_ylabel("val SRCC")
        ax.set_title(f"{stage}: checkpoint chosen on val SRCC (*)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{stage}_checkpoint_selection.png"
        fig.savefig(fig_dir / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def plot_calibration(pred_csvs: list[Path], fig_dir: Path, split: str = "test") -> list[str]:
    """Mean prediction per true-MOS bin (± s.e., every seed's predictions pooled): calibration and bias."""
    plt = _pyplot()
    rows, models = _split_rows(pred_csvs, split)
    if not models:
        return []
    edges = np.arange(1, 11)
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for m in models:
        mos = np.array([float(r["mos"]) for r in rows if r["model"] == m])
        pred = np.array([float(r["pred"]) for r in rows if r["model"] == m])
        idx = np.clip(np.digitize(mos, edges) - 1, 0, len(edges) - 2)
        centres, means, errs = [], [], []
        for b in range(len(edges) - 1):
            sel = pred[idx == b]
            if len(sel):
                centres.append(edges[b] + 0.5)
                means.append(sel.mean())
                errs.append(sel.std(ddof=1) / np.sqrt(len(sel)) if len(sel) > 1 else 0.0)
        ax.errorbar(centres, means, yerr=errs, marker="o", ms=3, capsize=2, label=m)
    ax.plot([1, 10], [1, 10], "k--", lw=0.8, label="ideal")
    ax.set(
        xlim=(1, 10),
        ylim=(1, 10),
        xlabel="true MOS (bin centre)",
        ylabel="mean prediction",
        title=f"Calibration ({split})",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"calibration_{split}.png"
    fig.savefig(fig_dir / name, dpi=110)
    plt.close(fig)
    return [name]
