#!/usr/bin/env python
"""A local web page to try a model: score photos, compare two, score a batch (Gradio, on 127.0.0.1).

    python scripts/app.py --model models/dpo/seed42 [--port 7860] [--mode cot]

The model is any checkpoint the pipeline wrote, a hub id or a LoRA adapter dir (as for score_images.py).
"""

import argparse
from pathlib import Path

from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.levels import SCORE_MODES


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint dir, LoRA adapter dir or hub id")
    ap.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--mode", choices=SCORE_MODES, default="cot", help="the page's default scoring mode")
    ap.add_argument("--samples", type=int, default=8, help="cot_sampled: critiques sampled per image")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--num-levels", type=int, default=10)
    args = ap.parse_args()
    if not (Path(args.model).exists() or "/" in args.model):
        raise UserError(f"--model {args.model}: no such checkpoint directory")
    from aesthetic_llm.app.web import build_app
    from aesthetic_llm.scorer import Scorer

    scorer = Scorer(
        args.model,
        num_levels=args.num_levels,
        mode=args.mode,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        samples=args.samples,
    )
    print(f"model {args.model} loaded; serving on http://{args.host}:{args.port}", flush=True)
    build_app(scorer, args.model).queue().launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
