"""Markdown tables and sections of reports/report.md: results, comparisons, metrics, training, base model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aesthetic_llm.io_utils import read_json
from aesthetic_llm.paths import INIT_MODEL

MODELS = ("zero_shot", "zero_shot_qalign5", "qalign_style", "sft", "dpo")
SPLITS = ("test", "hard", "unseen", "val")
# The paired comparisons the study's claims rest on: (model, other, label).
CLAIMS = (
    ("sft", "zero_shot", "SFT − zero-shot"),
    ("dpo", "sft", "DPO − SFT"),
    ("sft", "qalign_style", "CoT − no-CoT (SFT − qalign_style)"),
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
    info_path = INIT_MODEL / "build_info.json"
    info = read_json(info_path) if info_path.exists() else {}
    if info.get("init") == "random" and Path(name) == INIT_MODEL:
        return (
            f"Base model: the demo's tiny Qwen2-VL ({info.get('parameters', 0) / 1e6:.2f} M parameters), randomly "
            "initialised with no visual pre-training, so SRCC near zero on held-out photos is the expected "
            "outcome here."
        )
    return f"Base model: `{name}`."


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
