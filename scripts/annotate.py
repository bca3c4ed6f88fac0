#!/usr/bin/env python
"""Write a CoT critique for every image.

Without --manifest: the DVC stage `annotate` (params-driven, every split in annotate.splits).
With --manifest: one manifest through an OpenAI-compatible vision API (annotate.api.* params are defaults):

    python scripts/annotate.py --manifest M.csv --out annotations.jsonl --base-url URL --model NAME \\
        [--concurrency K] [--max-cost USD] [--dry-run]

The key is read from $OPENAI_API_KEY ($DASHSCOPE_API_KEY for DashScope URLs; --key-env to choose).
"""

import argparse
import json
import sys
from pathlib import Path

from aesthetic_llm.annotate.stage import annotate
from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.params import Params


def direct(args: argparse.Namespace) -> None:
    from aesthetic_llm.annotate.api import annotate_api, format_summary
    from aesthetic_llm.annotate.api_config import ApiConfig, load_items

    missing = [f"--{n.replace('_', '-')}" for n in ("out", "base_url", "model") if getattr(args, n) is None]
    if missing:
        raise UserError(f"--manifest needs {', '.join(missing)}")
    params = Params.load(args.params) if Path(args.params).exists() else None
    cfg = ApiConfig.from_params(
        params,
        base_url=args.base_url,
        model=args.model,
        key_env=args.key_env,
        num_levels=args.num_levels,
        concurrency=args.concurrency,
        max_tries=args.max_tries,
        timeout_s=args.timeout,
        max_side=args.max_side,
        max_cost_usd=args.max_cost,
        cache=args.cache,
    )
    summary = annotate_api(load_items(args.manifest, cfg), args.out, cfg, dry_run=args.dry_run)
    print(format_summary(summary, cfg.model))
    print(json.dumps(summary))


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", help="CSV with image_id,path,mos: annotate it through the API")
    ap.add_argument("--out", help="output JSONL (also the answer cache unless --cache)")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--max-cost", type=float, help="stop sending requests once this many USD are spent")
    ap.add_argument("--dry-run", action="store_true", help="estimate tokens and cost; send nothing")
    ap.add_argument("--key-env", help="environment variable holding the API key")
    ap.add_argument("--num-levels", type=int)
    ap.add_argument("--max-tries", type=int)
    ap.add_argument("--timeout", type=float, help="seconds per request")
    ap.add_argument("--max-side", type=int)
    ap.add_argument("--cache", help="answer cache JSONL shared between outputs")
    args = ap.parse_args()
    if args.manifest is not None:
        direct(args)
        return
    given = [a for a in sys.argv[1:] if a.startswith("--") and not a.startswith("--params")]
    if given:
        raise UserError(f"{given[0]} needs --manifest (without it the stage is driven by {args.params})")
    print(json.dumps(annotate(Params.load(args.params))))


if __name__ == "__main__":
    main()
