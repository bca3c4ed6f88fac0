"""Ranking DVC experiments: read `dvc exp show --json` and each run's metrics, render Markdown tables with CIs."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_json
from aesthetic_llm.paths import TRAIN_REPORTS, train_reports

PARAM_KEYS = (
    "dpo.pair_strategy",
    "dpo.sft_holdout",
    "dpo.sft_holdout_seed",
    "dpo.loss",
    "dpo.beta",
    "dpo.ftx",
    "dpo.finetuning_type",
    "dpo.learning_rate",
    "sft.finetuning_type",
    "sft.learning_rate",
    "profile",
)
TRAIN_KEYS = ("train_loss", "final_eval_loss", "selected_step", "selected_val_srcc", "train_runtime")


def _dig(node: Any, dotted: str | list[str]) -> Any:
    for part in dotted.split(".") if isinstance(dotted, str) else dotted:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def wilson(acc: float | None, n: int | None, z: float = 1.96) -> list[float] | None:
    """95% Wilson interval of a proportion (pairs share images, so it is, if anything, too narrow)."""
    if acc is None or not n:
        return None
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def exp_show(json_path: Path | None, revs: list[str] | None = None) -> list[dict[str, Any]]:
    """`dvc exp show --json` of HEAD, or of the given baseline commits (experiments tied to older commits)."""
    if json_path is not None:
        return json.loads(json_path.read_text(encoding="utf-8"))
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")  # the project env's, when not on PATH
    if not Path(dvc).exists():
        raise UserError("dvc not found on PATH or beside this Python (run through make, or activate .venv)")
    extra = [a for rev in revs or [] for a in ("--rev", rev)]
    proc = subprocess.run([dvc, "exp", "show", "--json", *extra], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"dvc exp show --json failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    return json.loads(proc.stdout)


def _entries(show: list[dict[str, Any]], include_workspace: bool) -> list[tuple[str, dict[str, Any]]]:
    """(kind, entry) for each baseline commit and each experiment, in `dvc exp show` order."""
    out = []
    for top in show:
        if top.get("rev") != "workspace" or include_workspace:
            out.append(("baseline", top))
        for exp in top.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            for rev in exp.get("revs") or []:
                if state not in (None, "success"):  # queued/running/failed: its metrics are not its own yet
                    rev = dict(rev, error={"msg": f"experiment {state}"}, data=None)
                out.append(("experiment", rev))
    return out


def _metrics_at(rev: str, metrics_path: str, fallback: dict[str, Any] | None) -> dict[str, Any] | None:
    if rev == "workspace" or not rev:
        return read_json(metrics_path) if Path(metrics_path).exists() else fallback
    proc = subprocess.run(["git", "show", f"{rev}:{metrics_path}"], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            pass
    return fallback


def _train_metrics(rev: str, model: str, seeds: list[int]) -> dict[str, Any] | None:
    """The train stage's summary (losses, selected checkpoint) of the first training seed, from the run's own
    commit (runs from before training seeds kept one flat reports/train/)."""
    first = (train_reports(seeds[0]) / f"{model}_metrics.json").as_posix() if seeds else None
    return (_metrics_at(rev, first, None) if first else None) or _metrics_at(
        rev, (TRAIN_REPORTS / f"{model}_metrics.json").as_posix(), None
    )


def collect(
    show: list[dict[str, Any]], metrics_path: str, params_file: str, model: str, include_workspace: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    rows, skipped, seen = [], [], set()
    baselines: dict[tuple, str] = {}
    for kind, entry in _entries(show, include_workspace):
        rev, data = entry.get("rev"), entry.get("data") or {}
        name = entry.get("name") or (rev[:7] if rev and rev != "workspace" else "workspace")
        if rev in seen:
            continue
        seen.add(rev)
        if entry.get("error") or not data:
            skipped.append(f"{name}: {(entry.get('error') or {}).get('msg', 'no data (queued or failed)')}")
            continue
        params = _dig(data, ["params", params_file, "data"]) or {}
        shown = _dig(data, ["metrics", metrics_path, "data"])
        metrics = _metrics_at(rev, metrics_path, shown)
        m = _dig(metrics, f"models.{model}")
        if not m:
            skipped.append(f"{name}: no {model} metrics in {metrics_path}")
            continue
        hard = m.get("hard") or {}
        if kind == "baseline":  # several baseline commits (--rev) that reran the same pipeline: list it once
            key = (_dig(m, "val.srcc"), _dig(m, "test.srcc"), hard.get("pair_acc"))
            if key in baselines:
                skipped.append(f"{name}: baseline with the same metrics as {baselines[key]}")
                continue
            baselines[key] = name
        rows.append(
            {
                "name": name,
                "kind": kind,
                "rev": rev,
                "params": {k: _dig(params, k) for k in PARAM_KEYS},
                "val_srcc": _dig(m, "val.srcc"),
                "val_srcc_ci": _dig(m, "val.srcc_ci"),
                "test_srcc": _dig(m, "test.srcc"),
                "test_srcc_ci": _dig(m, "test.srcc_ci"),
                "hard_pair_acc": hard.get("pair_acc"),
                "hard_n_pairs": hard.get("n_pairs"),
                # The evaluate stage's image-bootstrap CI; older runs only have the count (Wilson, too narrow).
                "hard_pair_acc_ci": hard.get("pair_acc_ci") or wilson(hard.get("pair_acc"), hard.get("n_pairs")),
                # DPO's paired difference to its own SFT model on the same hard pairs (evaluate stage)
                "hard_diff_vs_sft": hard.get("pair_acc_diff_vs_sft"),
                "hard_diff_vs_sft_ci": hard.get("pair_acc_diff_vs_sft_ci"),
                "test_diff_vs_sft": _dig(m, "test.srcc_diff_vs_sft"),
                "test_diff_vs_sft_ci": _dig(m, "test.srcc_diff_vs_sft_ci"),
                "train": {k: _dig(train, k) for k in TRAIN_KEYS}
                if (train := _train_metrics(rev, model, params.get("seeds") or []))
                else {},
            }
        )
    rows.sort(key=lambda r: (r["val_srcc"] is None, -(r["val_srcc"] or 0.0), -(r["hard_pair_acc"] or 0.0)))
    return rows, skipped


def _fmt(x: float | None, ci: list[float] | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{x:.3f}"


def _holdout(p: dict[str, Any]) -> str:
    share, seed = p.get("dpo.sft_holdout") or 0, p.get("dpo.sft_holdout_seed")
    return f"{share} (seed {seed})" if share and seed is not None else str(share)


def _overlaps(ci: list[float] | None, best: list[float] | None) -> str:
    if not ci or not best:
        return "?"
    return "yes" if ci[0] <= best[1] and best[0] <= ci[1] else "no"


def _marginals(rows: list[dict[str, Any]], key: str) -> list[str]:
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r["val_srcc"] is not None and r["params"].get(key) is not None:
            groups.setdefault(str(r["params"][key]), []).append(r["val_srcc"])
    lines = [f"| {key} | runs | mean val SRCC | best val SRCC |", "|---|---:|---:|---:|"]
    for value, xs in sorted(groups.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])):
        lines.append(f"| {value} | {len(xs)} | {sum(xs) / len(xs):.3f} | {max(xs):.3f} |")
    return lines


def render(rows: list[dict[str, Any]], skipped: list[str], model: str) -> str:
    parts = [
        "# Alignment variants: DVC experiments compared",
        "",
        f"Model `{model}`, ranked by val SRCC (then hard-pair accuracy). SRCC: 95% bootstrap CI from the evaluate "
        "stage; hard-pair accuracy: 95% image-bootstrap CI from the evaluate stage (runs that predate it: a Wilson "
        "interval over the pairs, optimistic because pairs share images). *Overlaps best*: whether the val-SRCC CI overlaps the top row's — where it does, the "
        "ranking between them is not established by this data.",
        "",
    ]
    if not rows:
        return "\n".join(parts + ["No experiment with metrics found (run `make compare`).", ""])
    best = rows[0]["val_srcc_ci"]
    parts += [
        "| rank | experiment | pair strategy | SFT holdout | loss | beta | lr | val SRCC [95% CI] | overlaps best | "
        "hard-pair acc [95% CI] (pairs) | hard-pair − SFT [95% CI] | test SRCC [95% CI] | test SRCC − SFT [95% CI] |",
        "|---:|---|---|---:|---|---:|---:|---|:---:|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        p = r["params"]
        name = r["name"] + (" (baseline)" if r["kind"] == "baseline" else "")
        parts.append(
            f"| {i} | {name} | {p.get('dpo.pair_strategy') or '?'} | {_holdout(p)} | "
            f"{p.get('dpo.loss') or '?'} | "
            f"{p.get('dpo.beta') if p.get('dpo.beta') is not None else '?'} | "
            f"{p.get('dpo.learning_rate') if p.get('dpo.learning_rate') is not None else 'default'} | "
            f"{_fmt(r['val_srcc'], r['val_srcc_ci'])} | {_overlaps(r['val_srcc_ci'], best) if i > 1 else '—'} | "
            f"{_fmt(r['hard_pair_acc'], r['hard_pair_acc_ci'])} ({r['hard_n_pairs'] or 0}) | "
            f"{_fmt(r.get('hard_diff_vs_sft'), r.get('hard_diff_vs_sft_ci'))} | "
            f"{_fmt(r['test_srcc'], r['test_srcc_ci'])} | {_fmt(r.get('test_diff_vs_sft'), r.get('test_diff_vs_sft_ci'))} |"
        )
    parts += ["", "## By pair strategy", ""] + _marginals(rows, "dpo.pair_strategy")
    parts += ["", "## By loss", ""] + _marginals(rows, "dpo.loss") + [""]
    if skipped:
        parts += ["## Not compared", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(parts)


def _loss(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"


def render_finetuning(by_model: dict[str, list[dict[str, Any]]], skipped: list[str]) -> str:
    """LoRA vs full (or any finetuning_type / learning-rate variants): loss beside the downstream metric."""
    parts = [
        "# LoRA vs full fine-tuning: loss beside the downstream metric",
        "",
        "Each row is one DVC experiment (`make compare-finetuning`). Losses come from the run's train stage "
        "(`reports/train/<model>_metrics.json`: mean training loss, loss on the held-out `val` answers at the "
        "end); SRCC with its 95% bootstrap CI from the evaluate stage; hard-pair accuracy with its 95% CI. "
        "A lower validation loss is not a better scorer: a related study's LoRA run won on "
        "validation loss and lost 18 points downstream, which is why checkpoints here are chosen on val SRCC.",
        "",
    ]
    for model, rows in by_model.items():
        parts += [f"## {model}", ""]
        if not rows:
            parts += ["No run with metrics for this model.", ""]
            continue
        parts += [
            "| experiment | finetuning | lr | train loss | val loss | val SRCC [95% CI] | "
            "test SRCC [95% CI] | hard-pair acc [95% CI] |",
            "|---|---|---:|---:|---:|---|---|---|",
        ]
        for r in rows:
            p, t = r["params"], r["train"]
            parts.append(
                f"| {r['name']}{' (baseline)' if r['kind'] == 'baseline' else ''} | "
                f"{p.get(model + '.finetuning_type') or '?'} | {p.get(model + '.learning_rate') or 'default'} | "
                f"{_loss(t.get('train_loss'))} | {_loss(t.get('final_eval_loss'))} | "
                f"{_fmt(r['val_srcc'], r['val_srcc_ci'])} | {_fmt(r['test_srcc'], r['test_srcc_ci'])} | "
                f"{_fmt(r['hard_pair_acc'], r['hard_pair_acc_ci'])} |"
            )
        by_loss = [r for r in rows if isinstance(r["train"].get("final_eval_loss"), (int, float))]
        if len(by_loss) > 1:
            loss_pick = min(by_loss, key=lambda r: r["train"]["final_eval_loss"])["name"]
            srcc_pick = rows[0]["name"]  # rows are sorted by val SRCC
            verdict = "the same run" if loss_pick == srcc_pick else f"`{loss_pick}`, not `{srcc_pick}`"
            top, runner = rows[0]["val_srcc_ci"], rows[1]["val_srcc_ci"]
            settled = (
                "overlap: this data does not separate them" if _overlaps(runner, top) == "yes" else "do not overlap"
            )
            parts += [
                "",
                f"Lowest validation loss picks {verdict}, the best on val SRCC (their val SRCC CIs {settled}).",
            ]
        parts.append("")
    if skipped:
        parts += ["## Not compared", ""] + [f"- {s}" for s in sorted(set(skipped))] + [""]
    return "\n".join(parts)


def filter_experiments(show: list[dict[str, Any]], pattern: str) -> list[dict[str, Any]]:
    """Keep the experiments whose name matches the glob; baselines always stay."""
    for top in show:
        top["experiments"] = [
            e
            for e in top.get("experiments") or []
            if any(fnmatch(r.get("name") or "", pattern) for r in e.get("revs") or [])
        ]
    return show
