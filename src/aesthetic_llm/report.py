"""The report stage: reports/report.md and reports/figures/*.png, from this run's own files only."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from .io_utils import atomic_write_text, read_csv, read_json

MODELS = ("zero_shot", "zero_shot_qalign5", "qalign_style", "sft", "dpo")
SPLITS = ("test", "hard", "unseen", "val")
# Figures the study reported, for orientation only (Qwen2-VL-7B on AVA / AADB; not produced here).
STUDY_REFERENCE = (
    "Study (paper profile, AVA): zero-shot SRCC 0.331, SFT 0.775, DPO 0.802; AADB unseen: Q-Align 0.656, ours 0.729."
)


def _fmt(x: float | None, ci: list[float] | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def published_table() -> list[str]:
    """Q-Align's published figures as reference rows, labelled as quoted (never computed by this run)."""
    from .published_qalign import PUBLISHED_AVA

    lines = [
        "| reference (quoted, not computed here) | data | SRCC | PLCC | source |",
        "|---|---|---|---|---|",
    ]
    for r in PUBLISHED_AVA:
        lines.append(f"| {r['model']} | {r['dataset']} | {_fmt(r['srcc'])} | {_fmt(r['plcc'])} | {r['source']} |")
    return lines + [
        "",
        "Rows `*_published` in the results table, where present, are those checkpoints scored by this run "
        "(stage `published_qalign`, paper profile, `make setup-qalign`).",
    ]


def results_table(metrics: dict[str, Any]) -> str:
    models = [m for m in MODELS if m in metrics["models"]] + [m for m in metrics["models"] if m not in MODELS]
    lines = [
        "| model | "
        + " | ".join(f"{s} SRCC [95% CI]" for s in SPLITS[:3])
        + " | hard pair acc [95% CI] | Δ vs stage before: test SRCC; hard pairs [95% CI] | test PLCC | test bias |",
        "|---" * 8 + "|",
    ]
    for m in models:
        ms = metrics["models"][m]
        cells = []
        for s in SPLITS[:3]:
            e = ms.get(s, {})
            sig = " *" if (e.get("p_vs_zero_shot") is not None and e["p_vs_zero_shot"] < 0.05) else ""
            cells.append(_fmt(e.get("srcc"), e.get("srcc_ci")) + sig)
        hard, test = ms.get("hard", {}), ms.get("test", {})
        diff = next((k for k in hard if k.startswith("pair_acc_diff_vs_") and not k.endswith("_ci")), None)
        delta = ""
        if diff:
            before = diff.removeprefix("pair_acc_diff_vs_")
            srcc_d = test.get(f"srcc_diff_vs_{before}")
            delta = (
                f"test SRCC {_fmt(srcc_d, test.get(f'srcc_diff_vs_{before}_ci'))}; " if srcc_d is not None else ""
            ) + f"pairs {_fmt(hard[diff], hard.get(diff + '_ci'))} (vs {before})"
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {_fmt(hard.get('pair_acc'), hard.get('pair_acc_ci'))}"
            f" (n={hard.get('n_pairs', 0)}) | {delta} | {_fmt(test.get('plcc'))} | {_fmt(test.get('mean_bias'))} |"
        )
    return "\n".join(lines)


def detail_table(metrics: dict[str, Any]) -> str:
    lines = [
        "| model | split | n | SRCC | PLCC [95% CI] | PLCC after 4-param logistic | KRCC (tau-b) | RMSE | binary acc | p vs zero-shot |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, splits in metrics["models"].items():
        for split in SPLITS:
            e = splits.get(split)
            if e:
                lines.append(
                    f"| {m} | {split} | {e['n']} | {_fmt(e.get('srcc'))} | {_fmt(e.get('plcc'), e.get('plcc_ci'))} | "
                    f"{_fmt(e.get('plcc_logistic'))} | {_fmt(e.get('krcc'))} | {_fmt(e.get('rmse'))} | "
                    f"{_fmt(e.get('binary_acc'))} | {_fmt(e.get('p_vs_zero_shot'))} |"
                )
    return "\n".join(lines)


def agreement_table(metrics: dict[str, Any]) -> str:
    lines = [
        "| model | split | writes a level | mean abs(text level − weighted score), MOS units | text-level SRCC | pred std | mean bias |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, splits in metrics["models"].items():
        e = splits.get("test")
        if e:
            lines.append(
                f"| {m} | test | {_fmt(e.get('text_level_rate'))} | {_fmt(e.get('text_vs_weighted_mae'))} | "
                f"{_fmt(e.get('text_level_srcc'))} | {_fmt(e.get('pred_std'))} | {_fmt(e.get('mean_bias'))} |"
            )
    return "\n".join(lines)


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


def _split_rows(pred_csv: Path, split: str) -> tuple[list[dict[str, str]], list[str]]:
    """Prediction rows of one split, and the models present in it (table order first)."""
    rows = [r for r in read_csv(pred_csv, required=("model", "split", "pred", "mos")) if r["split"] == split]
    present = {r["model"] for r in rows}
    return rows, [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def plot_curves(train_dir: Path, fig_dir: Path) -> list[str]:
    plt = _pyplot()
    made = []
    panels = {
        "sft_loss.png": ("sft", ["loss", "eval_loss"], "SFT loss"),
        "dpo_loss.png": ("dpo", ["loss"], "DPO loss"),
        "dpo_reward_accuracy.png": ("dpo", ["rewards/accuracies", "rewards/margins"], "DPO rewards"),
    }
    for name, (stage, keys, title) in panels.items():
        cols = _read_log(train_dir / f"{stage}_log.csv")
        if not any(k in cols for k in keys):
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for k in keys:
            if k in cols:
                xs, ys = zip(*cols[k], strict=True)
                ax.plot(xs, ys, marker="o" if k == "eval_loss" else None, ms=3, label=k)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(fig_dir / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def plot_scatter(pred_csv: Path, fig_dir: Path, split: str = "test") -> list[str]:
    plt = _pyplot()
    rows, models = _split_rows(pred_csv, split)
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


def base_note(params: dict[str, Any]) -> str:
    """Say plainly what kind of base model produced these numbers."""
    name = str(params.get("model", {}).get("name_or_path"))
    record_path = Path(name) / "pretrain_record.json"
    if record_path.exists():
        rec = read_json(record_path)
        corpus, final, cfg = rec.get("corpus", {}), rec.get("final", {}), rec.get("config", {})
        region = final.get("vision_eval_region_r2", final.get("eval_region_r2"))
        damage = final.get("vision_eval_damage_r2", final.get("eval_damage_r2"))
        steps = (
            f"{cfg.get('vision_steps')} vision-only steps measuring, then {cfg.get('steps')} captioning steps"
            if cfg.get("vision_steps")
            else f"{cfg.get('steps')} steps"
        )
        return (
            f"Base model: `{name}`, the demo's tiny Qwen2-VL pre-trained by `make base-model` ({steps}) on "
            f"{corpus.get('images')} crops of the train split's {corpus.get('n_photos')} photos, to measure and "
            f"describe exposure, contrast, sharpness, noise and colour (held-out caption loss "
            f"{final.get('eval_caption_loss')}, region-statistics R² {region}"
            + (f", damage-statistics R² {damage}" if damage is not None else "")
            + f"); {corpus.get('rating_examples')} of those crops were rated "
            "with a rule of thumb from the measurements (sharper looks better), its only notion of quality. It "
            "never saw a score or an evaluation photo: like Qwen2-VL-7B in the study, it sees but is not "
            "calibrated to the rating task."
        )
    info_path = Path("models/init/build_info.json")
    info = read_json(info_path) if info_path.exists() else {}
    if info.get("init") == "random" and name == "models/init":
        return (
            f"Base model: the demo's tiny Qwen2-VL ({info.get('parameters', 0) / 1e6:.2f} M parameters), randomly "
            "initialised with no visual pre-training, so SRCC near zero on held-out photos is the expected "
            "outcome here."
        )
    return f"Base model: `{name}`."


def plot_selection(train_dir: Path, fig_dir: Path) -> list[str]:
    """Val SRCC of every checkpoint beside the loss curves: the choice is made on the former."""
    plt = _pyplot()
    made = []
    for stage in ("qalign_style", "sft", "dpo"):
        sel_path = train_dir / f"{stage}_selection.csv"
        if not sel_path.exists():
            continue
        sel = [r for r in read_csv(sel_path) if r["val_srcc"] not in ("", "None")]
        if not sel:
            continue
        log = _read_log(train_dir / f"{stage}_log.csv")
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for key in ("loss", "eval_loss"):
            if key in log:
                xs, ys = zip(*log[key], strict=True)
                ax.plot(xs, ys, marker="o" if key == "eval_loss" else None, ms=3, label=key, alpha=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        steps = [int(r["step"]) for r in sel]
        vals = [float(r["val_srcc"]) for r in sel]
        ax2.plot(steps, vals, "s-", color="tab:red", label="val SRCC")
        best = max(range(len(vals)), key=lambda i: (vals[i], -steps[i]))
        ax2.axvline(steps[best], color="tab:red", ls=":", lw=1)
        ax2.set_ylabel("val SRCC", color="tab:red")
        ax.set_title(f"{stage}: checkpoint chosen on val SRCC (step {steps[best]})")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
        fig.tight_layout()
        name = f"{stage}_checkpoint_selection.png"
        fig.savefig(fig_dir / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def plot_calibration(pred_csv: Path, fig_dir: Path, split: str = "test") -> list[str]:
    """Mean prediction per true-MOS bin (± s.e.): calibration and the mean bias toward the middle."""
    plt = _pyplot()
    rows, models = _split_rows(pred_csv, split)
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


def preference_pairs_section(pair_stats_path: Path) -> list[str]:
    """The DPO preference data (dpo_data's pair_stats.json) and where the strategy x loss comparison lives."""
    if not pair_stats_path.exists():
        return []
    st = read_json(pair_stats_path)
    dropped = st.get("dropped") or {}
    labels = {
        "mos_gap_mean": "mean |ΔMOS| to the other image",
        "chosen_error_mean": "mean chosen-level error",
        "rejected_error_mean": "mean rejected-level error",
        "rejected_signed_error_mean": "mean signed rejected-level error (< 0: rejected answers too low)",
    }
    extras = [f"{label} {st[key]:.2f}" for key, label in labels.items() if st.get(key) is not None]
    return [
        "",
        "## Preference pairs (DPO)",
        "",
        f"Strategy `{st.get('strategy', 'near_level')}`: {st.get('pairs')} pairs from {st.get('images_with_pairs', '?')} of "
        f"{st.get('images', '?')} training images; level gap |chosen − rejected| counts {json.dumps(st.get('level_gaps'))}"
        + (f", mean {st['level_gap_mean']:.2f}" if st.get("level_gap_mean") is not None else "")
        + "".join(f"; {e}" for e in extras)
        + (f"; dropped {json.dumps(dropped)}" if any(dropped.values()) else "; nothing dropped")
        + "."
        + (
            f" These are the training images of the source photos kept out of SFT (`dpo.sft_holdout`): "
            f"{', '.join(st['sft_holdout_sources'])}."
            if st.get("sft_holdout_sources")
            else ""
        ),
        "",
        "Pair strategies × DPO losses are compared as DVC experiments: `make compare` writes "
        "`reports/experiments.md` (ranked on val SRCC and hard-pair accuracy with 95% CIs).",
    ]


def build_report(
    metrics_path: Path,
    pred_csv: Path,
    train_dir: Path,
    data_stats: Path,
    out: Path,
    params_snapshot: dict[str, Any],
    pair_stats: Path = Path("data/llamafactory/dpo/pair_stats.json"),
) -> str:
    metrics = read_json(metrics_path)
    fig_dir = out.parent / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = (
        plot_curves(train_dir, fig_dir)
        + plot_selection(train_dir, fig_dir)
        + plot_scatter(pred_csv, fig_dir)
        + plot_calibration(pred_csv, fig_dir)
    )
    stats = read_json(data_stats) if data_stats.exists() else {}
    train = {
        s: read_json(train_dir / f"{s}_metrics.json")
        for s in ("qalign_style", "sft", "dpo")
        if (train_dir / f"{s}_metrics.json").exists()
    }
    parts = [
        f"# Aesthetic scoring report ({metrics.get('profile', '?')} profile)",
        "",
        "Generated by `dvc repro` (stage `report`) from this run's own predictions and training logs; "
        "every number below is read from the files listed at the end.",
        "",
        "## Results: SRCC with 95% bootstrap CI (`*`: p < 0.05 vs zero-shot, paired bootstrap)",
        "",
        results_table(metrics),
        "",
        base_note(params_snapshot),
        "",
        f"Reference only, not produced by this run — {STUDY_REFERENCE}",
        "",
        *published_table(),
        "",
        "## All metrics",
        "",
        f"Binary accuracy at MOS >= {metrics.get('settings', {}).get('binary_threshold')}; p-values from a paired "
        "bootstrap of the SRCC difference on the same images.",
        "",
        detail_table(metrics),
        "",
        "## Text level vs probability-weighted score (test)",
        "",
        "The study saw the written level disagree with the weighted score and a mean bias toward the middle.",
        "",
        agreement_table(metrics),
        "",
        "## Training",
        "",
    ]
    for stage, m in train.items():
        parts.append(
            f"- **{stage}** ({m.get('finetuning_type')}, `{m.get('config')}`): {m.get('steps')} steps, "
            f"train loss {_fmt(m.get('train_loss'))}, runtime {m.get('train_runtime', 0):.0f} s"
            + (f", final eval loss {_fmt(m.get('final_eval_loss'))}" if "final_eval_loss" in m else "")
            + (
                f", final reward accuracy {_fmt(m.get('final_reward_accuracy'))}"
                if "final_reward_accuracy" in m
                else ""
            )
            + (
                f"; checkpoint chosen on val SRCC: step {m['selected_step']} (val SRCC {_fmt(m.get('selected_val_srcc'))}"
                f", last step {m.get('final_step')}: {_fmt(m.get('final_val_srcc'))})"
                if "selected_step" in m
                else ""
            )
        )
    parts += preference_pairs_section(pair_stats)
    parts += ["", "## Figures", ""] + [f"![{f}](figures/{f})" for f in figs]
    if stats:
        parts += [
            "",
            "## Data",
            "",
            f"Counts per split: {json.dumps(stats.get('counts'))}; hard band {stats.get('hard_band')}, "
            f"{stats.get('hard_pairs')} hard pairs (0 < |ΔMOS| ≤ {stats.get('hard_pair_max_delta', 'n/a')}); splits disjoint by source photo: {json.dumps(stats.get('sources'))}.",
        ]
    parts += [
        "",
        "## Provenance",
        "",
        f"- metrics: `{metrics_path}`; predictions: `{pred_csv}`; training logs and effective LLaMA-Factory configs: `{train_dir}/`",
        f"- seed {params_snapshot.get('seed')}, profile {params_snapshot.get('profile')}; full parameters: `reports/params_used.yaml`",
        "",
    ]
    text = "\n".join(parts)
    atomic_write_text(out, text)
    return text
