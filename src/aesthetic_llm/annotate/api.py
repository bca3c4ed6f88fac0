"""CoT critiques from any OpenAI-compatible vision endpoint: concurrent, resumable, never paying twice.

Each image is sent (resized, as a base64 data URL) with CRITIC_INSTRUCTION for its true level. Answers are
validated ('… Rating Level: N' at the end, N the requested level, no score stated in the analysis: see
validate.score_leak; ordinary numbers such as f/1.8, ISO 3200 or "two people" are kept) and appended,
one fsynced JSON line each, to a log keyed by content: sha256(model, prompt version + text, image sha256,
generation params). Anything already in the log is never requested again, so a rerun or a restart after a
kill resumes where it stopped. At the end the output is rewritten atomically in manifest order and every
image without an answer is listed, with the latest reason, in `<out>.failures.jsonl`.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from aesthetic_llm.annotate.api_config import ApiConfig, Item, load_items
from aesthetic_llm.annotate.client import Annotator, Stats
from aesthetic_llm.annotate.journal import AppendLog, failures_path, load_cache
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import write_jsonl
from aesthetic_llm.params import Params
from aesthetic_llm.paths import API_CACHE


# -- dry run ---------------------------------------------------------------------------------------
def estimate_tokens(item: Item, cfg: ApiConfig) -> tuple[int, int]:
    """(prompt, completion) tokens an item is expected to cost; an estimate, not a count."""
    with Image.open(item.path) as im:
        w, h = im.size
    scale = min(1.0, cfg.max_side / max(w, h))
    w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if "qwen" in cfg.model.lower():  # Qwen-VL: one token per 28x28 patch (after the 2x2 merge) + 2 markers
        image_tokens = math.ceil(w / 28) * math.ceil(h / 28) + 2
    else:  # OpenAI high detail: 85 + 170 per 512 px tile
        image_tokens = 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
    return image_tokens + len(item.prompt) // 4 + 10, cfg.max_tokens


# -- entry points ----------------------------------------------------------------------------------
def annotate_api(
    items: list[Item],
    out: str | Path,
    cfg: ApiConfig,
    dry_run: bool = False,
    emit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Annotate items into `out` (JSONL); returns the summary. See the module docstring."""
    emit = emit or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    log_path = Path(cfg.cache) if cfg.cache else out
    cache, bad = load_cache(log_path, cfg, repair=not dry_run)
    if bad:
        emit(f"annotate: {log_path}: skipped {bad} incomplete/invalid line(s)")
    todo = list({it.key: it for it in items if it.key not in cache}.values())  # one request per content key
    summary: dict[str, Any] = {"total": len(items), "cached": sum(it.key in cache for it in items)}
    if dry_run:
        pt = ct = 0
        for it in todo:
            p, c = estimate_tokens(it, cfg)
            pt, ct = pt + p, ct + c
        cost = cfg.cost(pt, ct)
        summary.update(
            to_request=len(todo),
            est_prompt_tokens=pt,
            est_completion_tokens_max=ct,
            est_cost_usd_max=None if cost is None else round(cost, 4),
            note="estimate only (image tokens from size, text ~4 chars/token, output at max_tokens); no request sent",
        )
        return summary

    if cfg.max_cost_usd and cfg.model not in cfg.prices:
        raise UserError(f"max cost set but no price for model {cfg.model!r} (add it to annotate.api.prices)")
    api_key = os.environ.get(cfg.api_key_env(), "")
    if todo and not api_key:
        raise UserError(f"${cfg.api_key_env()} is not set (the API key is read from the environment only)")
    t0 = time.perf_counter()
    annotator: Annotator | None = None
    reasons: dict[str, str] = {}
    if todo and cfg.max_cost_usd < 0:
        reasons = dict.fromkeys((it.key for it in todo), "not requested: max cost reached")
    elif todo:
        log = AppendLog(log_path)
        try:
            annotator = Annotator(cfg, api_key, log, emit)
            asyncio.run(annotator.run(todo))
        finally:
            log.close()
        cache.update(annotator.records)

    # Final output: manifest order, one record per image, written atomically (compacts the log too).
    records = [
        {**cache[it.key], "image_id": it.image_id, "path": it.path, "mos": it.mos} for it in items if it.key in cache
    ]
    write_jsonl(out, records)
    if annotator:
        reasons = annotator.reasons
    failed = [
        {"image_id": it.image_id, "path": it.path, "reason": reasons.get(it.key, "no answer")}
        for it in items
        if it.key not in cache
    ]
    write_jsonl(failures_path(out), failed)
    stats = annotator.stats if annotator else Stats()
    cost = stats.cost_usd if cfg.model in cfg.prices else None
    summary.update(
        done=stats.done,
        failed=len(failed),
        annotated=len(records),
        requests=stats.requests,
        retries=dict(stats.retries),
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        cost_usd=None if cost is None else round(cost, 6),
        stopped=annotator.stop_reason if annotator else "",
        min_concurrency=annotator.limiter.min_seen if annotator else cfg.concurrency,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
    if annotator and annotator.fatal:
        raise UserError(annotator.fatal)
    return summary


def format_summary(s: dict[str, Any], model: str) -> str:
    if "to_request" in s:
        cost = "unknown (no price for this model)" if s["est_cost_usd_max"] is None else f"<= ${s['est_cost_usd_max']}"
        return (
            f"dry run: {s['total']} images, {s['cached']} cached, {s['to_request']} to request; ESTIMATE "
            f"~{s['est_prompt_tokens']} prompt + <= {s['est_completion_tokens_max']} completion tokens, cost {cost} "
            f"({model})"
        )
    cost = "unknown (no price for this model)" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"
    line = (
        f"annotate: {s['done']} done, {s['cached']} cached, {s['failed']} failed of {s['total']}; "
        f"{s['requests']} requests, {s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens, "
        f"cost {cost} ({model})"
    )
    return line + (f"; stopped: {s['stopped']}" if s["stopped"] else "")


def annotate_params(params: Params, manifests: dict[str, Path], out_dir: Path) -> tuple[dict[str, int], dict]:
    """The DVC stage with backend api: `<out_dir>/<split>.jsonl` per split, answers cached outside the out."""
    cfg = ApiConfig.from_params(params)
    cfg = replace(cfg, cache=cfg.cache or str(API_CACHE))
    max_failed = params.num("annotate.api.max_failed_fraction", 0.0, lo=0, hi=1)
    counts, summaries, spent = {}, {}, 0.0
    for split, manifest in manifests.items():
        # What earlier splits left of the budget; -1 = spent (nothing is requested).
        budget = (max(cfg.max_cost_usd - spent, 0.0) or -1.0) if cfg.max_cost_usd else 0.0
        s = annotate_api(load_items(manifest, cfg), out_dir / f"{split}.jsonl", replace(cfg, max_cost_usd=budget))
        print(format_summary(s, cfg.model), file=sys.stderr)
        spent += s["cost_usd"] or 0.0
        counts[split], summaries[split] = s["annotated"], s
        if s["total"] and s["failed"] / s["total"] > max_failed:
            raise UserError(
                f"annotate: {split}: {s['failed']} of {s['total']} images failed "
                f"(see {failures_path(out_dir / f'{split}.jsonl')}; annotate.api.max_failed_fraction={max_failed:g}); "
                "rerun to retry them, cached answers are not requested again"
            )
    return counts, summaries
