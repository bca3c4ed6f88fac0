"""The report stage: reports/report.md and reports/figures/*.png, from this run's own files only."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from aesthetic_llm.io_utils import atomic_write_text, read_csv, read_json

MODELS = ("zero_shot", "zero_shot_qalign5", "qalign_style", "sft", "dpo")
SPLITS = ("test", "hard", "unseen", "val")
# The paired comparisons the study's claims rest on: (model, other, label).
CLAIMS = (
    ("sft", "zero_shot", "SFT − zero-shot"),
    ("dpo", "sft", "DPO − SFT"),
    ("sft", "qalign_style", "CoT − no-CoT (SFT − qalign_style)"),
)
# Figures the study reported, for orientation only (Qwen2-VL-7B on AVA / AADB; not produced here).
STUDY_REFERENCE = (
    "Study (paper profile, AVA): zero-shot SRCC 0.331, SFT 0.775, DPO 0.802; AADB unseen: Q-Align 0.656, ours 0.729."
)


def _fmt(x: float | None, ci: list[float] | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _cell(e: dict[str, Any], key: str) -> str:
    """mean [CI] (min–max over seeds) of one metric, or the single value of an untrained model."""
    if not e or e.get(key) is None:
        return "n/a"
    spread = e.get(f"{key}_spread")
    seeds = f" ({spread[0]:.2f}–{spread[1]:.2f})" if spread and e.get("trained") and len(e[f"{key}_seeds"]) > 1 else ""
    return _fmt(e[key], e.get(f"{key}_ci")) + seeds


def _models(metrics: dict[str, Any]) -> list[str]:
    return [m for m in MODELS if m in metrics["models"]] + [m for m in metrics["models"] if m not in MODELS]


def published_table() -> list[str]:
    """Q-Align's published figures as reference rows, labelled as quoted (never computed by this run)."""
    from aesthetic_llm.scoring.published_qalign import PUBLISHED_AVA

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
    """Per model: the seed mean of SRCC on test / unseen / val and of hard-pair accuracy, with CI and spread."""
    lines = [
        "| model | test SRCC | unseen SRCC | val SRCC | hard-pair accuracy | test PLCC | test bias |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in _models(metrics):
        ms = metrics["models"][m]
        test, hard = ms.get("test", {}), ms.get("hard", {})
        lines.append(
            f"| {m} | {_cell(test, 'srcc')} | {_cell(ms.get('unseen', {}), 'srcc')} | {_cell(ms.get('val', {}), 'srcc')}"
            f" | {_cell(hard, 'pair_acc')} (n={hard.get('n_pairs', 0)}) | {_fmt(test.get('plcc'))}"
            f" | {_fmt(test.get('mean_bias'))} |"
        )
    return "\n".join(lines)


def verdict(ci: list[float] | None) -> str:
    """A difference is a finding only when its CI excludes zero."""
    if not ci:
        return "n/a"
    return "CI above 0" if ci[0] > 0 else "CI below 0" if ci[1] < 0 else "within noise"


def comparisons_table(metrics: dict[str, Any]) -> str:
    """The study's paired claims: mean difference over seeds [CI], per seed, and whether the CI excludes zero."""
    lines = ["| comparison | on | difference [95% CI] | per seed | verdict |", "|---|---|---|---|---|"]
    for model, other, label in CLAIMS:
        for split, stat, what in (
            ("test", "srcc", "test SRCC"),
            ("unseen", "srcc", "unseen SRCC"),
            ("hard", "pair_acc", "hard-pair accuracy"),
        ):
            e = metrics["models"].get(model, {}).get(split, {})
            key = f"{stat}_diff_vs_{other}"
            if key not in e:
                continue
            per = ", ".join(f"{v:+.3f}" for v in e.get(f"{key}_seeds") or [])
            ci = e.get(f"{key}_ci")
            lines.append(f"| {label} | {what} | {_fmt(e[key], ci)} | {per} | {verdict(ci)} |")
    return "\n".join(lines)


def targets(metrics: dict[str, Any]) -> list[str]:
    """The demo's learning targets, judged on the seed means (and the CI of each difference)."""
    ms = metrics["models"]
    sft = ms.get("sft", {}).get("test", {})
    hard = ms.get("dpo", {}).get("hard", {})
    out = []
    if sft.get("srcc") is not None:
        out.append(f"- SFT test SRCC ≥ 0.6: {'met' if sft['srcc'] >= 0.6 else 'not met'} (seed mean {sft['srcc']:.3f})")
    if sft.get("srcc_diff_vs_zero_shot") is not None:
        d = sft["srcc_diff_vs_zero_shot"]
        out.append(
            f"- SFT ≥ zero-shot + 0.3 on test SRCC: {'met' if d >= 0.3 else 'not met'} (difference {_fmt(d, sft.get('srcc_diff_vs_zero_shot_ci'))})"
        )
    if hard.get("pair_acc_diff_vs_sft") is not None:
        d, ci = hard["pair_acc_diff_vs_sft"], hard.get("pair_acc_diff_vs_sft_ci")
        out.append(
            f"- DPO ≥ SFT on hard-pair accuracy: {'met' if d >= 0 else 'not met'} on the seed mean "
            f"(difference {_fmt(d, ci)}; {verdict(ci)})"
        )
    return out


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


def preference_pairs_section(pair_stats: dict[int, Path]) -> list[str]:
    """The DPO preference data per training seed (dpo_data's pair_stats.json)."""
    lines = []
    for seed, path in pair_stats.items():
        if not path.exists():
            continue
        st = read_json(path)
        dropped = st.get("dropped") or {}
        extras = [
            f"{label} {st[key]:.2f}"
            for key, label in (
                ("level_gap_mean", "mean level gap |chosen − rejected|"),
                ("mos_gap_mean", "mean |ΔMOS| to the other image"),
                ("chosen_error_mean", "mean chosen-level error"),
                ("rejected_error_mean", "mean rejected-level error"),
                ("rejected_signed_error_mean", "mean signed rejected-level error (< 0: too low)"),
            )
            if st.get(key) is not None
        ]
        lines.append(
            f"- seed {seed}, strategy `{st.get('strategy', 'near_level')}`: {st.get('pairs')} pairs from "
            f"{st.get('images_with_pairs', '?')} of {st.get('images', '?')} training images; "
            + "; ".join(extras)
            + (f"; dropped {json.dumps(dropped)}" if any(dropped.values()) else "; nothing dropped")
            + (
                f"; DPO-only source photos (`dpo.sft_holdout`): {', '.join(st['sft_holdout_sources'])}"
                if st.get("sft_holdout_sources")
                else ""
            )
        )
    if not lines:
        return []
    return [
        "",
        "## Preference pairs (DPO)",
        "",
        *lines,
        "",
        "Pair strategies × DPO losses are compared as DVC experiments: `make compare` writes `reports/experiments.md`.",
    ]


def training_section(train: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    """One row per stage and seed: steps, loss, runtime, and the checkpoint chosen on val against the last one."""
    lines = [
        "| stage | seed | steps | train loss | runtime (s) | chosen step: val SRCC | last step: val SRCC |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in ("qalign_style", "sft", "dpo"):
        for seed, stages in train.items():
            m = stages.get(stage)
            if not m:
                continue
            chosen = f"{m['selected_step']}: {_fmt(m.get('selected_val_srcc'))}" if "selected_step" in m else "n/a"
            last = f"{m.get('final_step', m.get('steps'))}: {_fmt(m.get('final_val_srcc'))}"
            lines.append(
                f"| {stage} | {seed} | {m.get('steps')} | {_fmt(m.get('train_loss'))} | "
                f"{m.get('train_runtime', 0):.0f} | {chosen} | {last} |"
            )
    return lines


def environment_line(train: dict[int, dict[str, dict[str, Any]]]) -> str:
    """What the trained numbers depend on besides code, params and data (numerics.fingerprint)."""
    envs = [m["environment"] for stages in train.values() for m in stages.values() if m.get("environment")]
    if not envs:
        return ""
    e = envs[0]
    cpu = e.get("cpu", {})
    same = all(x == e for x in envs)
    return (
        f"Trained on {cpu.get('model')} ({cpu.get('vendor')}; flags {', '.join(cpu.get('flags', []))}), torch "
        f"{e.get('torch')}, {e.get('blas')}, oneDNN {e.get('onednn')}, kernels {e.get('cpu_capability')}, "
        f"{e.get('threads')} threads, pins {json.dumps(e.get('env'))}"
        + ("" if same else " (not the same in every training stage: see reports/train/seed*/*_metrics.json)")
        + "."
    )


def build_report(
    metrics_path: Path,
    pred_csvs: list[Path],
    train_dirs: dict[int, Path],
    data_stats: Path,
    out: Path,
    params_snapshot: dict[str, Any],
    pair_stats: dict[int, Path],
) -> str:
    """reports/report.md and its figures from this run's metrics, predictions (base + every seed) and logs."""
    metrics = read_json(metrics_path)
    fig_dir = out.parent / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    first = pred_csvs[:2]  # the base model's and the first seed's predictions
    figs = (
        plot_curves(train_dirs, fig_dir)
        + plot_selection(train_dirs, fig_dir)
        + plot_scatter(first, fig_dir)
        + plot_calibration(pred_csvs, fig_dir)
    )
    stats = read_json(data_stats) if data_stats.exists() else {}
    train = {
        seed: {
            s: read_json(d / f"{s}_metrics.json")
            for s in ("qalign_style", "sft", "dpo")
            if (d / f"{s}_metrics.json").exists()
        }
        for seed, d in train_dirs.items()
    }
    settings = metrics.get("settings", {})
    seeds = settings.get("seeds", [])
    parts = [
        f"# Aesthetic scoring report ({metrics.get('profile', '?')} profile)",
        "",
        "Generated by `dvc repro` (stage `report`) from this run's own predictions and training logs; "
        "every number below is read from the files listed at the end.",
        "",
        f"## Results over {len(seeds)} training seed(s) {seeds}",
        "",
        f"Each cell: the mean over training seeds [{settings.get('ci', 0.95):.0%} CI] (min–max across seeds). The CI is a "
        f"{settings.get('bootstrap')}-replicate bootstrap over training seeds × source photos × crops within a "
        "photo (crops of one photo are not independent draws); models not trained here (zero-shot) have no seed "
        "spread. Data, critiques and the test set are the same for every seed.",
        "",
        results_table(metrics),
        "",
        "## The study's comparisons (paired: same seeds, same images)",
        "",
        comparisons_table(metrics),
        "",
        "A difference is a finding only when its CI excludes zero; otherwise it is within noise. Test and "
        f"unseen hold {metrics['models'].get('sft', {}).get('test', {}).get('n_sources', '?')} and "
        f"{metrics['models'].get('sft', {}).get('unseen', {}).get('n_sources', '?')} source photos: the photo "
        "level of the bootstrap has few distinct draws, so these intervals speak for these photos' kind only roughly.",
        "",
        "Targets of the demo, on the seed means:",
        "",
        *targets(metrics),
        "",
        base_note(params_snapshot),
        "",
        f"Reference only, not produced by this run — {STUDY_REFERENCE}",
        "",
        *published_table(),
        "",
        "## All metrics (seed means)",
        "",
        f"Binary accuracy at MOS >= {settings.get('binary_threshold')}; p-values from the seed × photo bootstrap "
        "of the paired SRCC difference. Per-seed values: `reports/metrics.json` (`<metric>_seeds`).",
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
        *training_section(train),
        "",
        environment_line(train),
    ]
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
        f"- metrics: `{metrics_path}`; predictions: {', '.join(f'`{p}`' for p in pred_csvs)}; training logs and "
        "effective LLaMA-Factory configs: `reports/train/seed<N>/`",
        f"- data seed {params_snapshot.get('seed')}, training seeds {seeds}, profile {params_snapshot.get('profile')}; "
        "full parameters: `reports/params_used.yaml`",
        "",
    ]
    text = "\n".join(parts)
    atomic_write_text(out, text)
    return text
