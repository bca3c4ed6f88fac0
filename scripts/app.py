#!/usr/bin/env python
"""A local web page to try a model: score photos, compare two, score a batch (Gradio, on 127.0.0.1).

    python scripts/app.py --model models/dpo/seed42 [--port 7860] [--mode cot]

The model is any checkpoint the pipeline wrote, a hub id or a LoRA adapter dir (as for score_images.py).
"""

import argparse

from aesthetic_llm.errors import cli_entry
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
    from aesthetic_llm.app.web import build_app
    from aesthetic_llm.scorer import scorer_from_args

    scorer = scorer_from_args(args)
    print(f"model {args.model} loaded; serving on http://{args.host}:{args.port}", flush=True)
    build_app(scorer, args.model).queue().launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
