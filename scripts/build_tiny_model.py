#!/usr/bin/env python
"""DVC stage `model`: build the demo's tiny Qwen2-VL checkpoint (random init) at model.name_or_path."""

import argparse
from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.params import Params


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="models/base")
    args = ap.parse_args()
    p = Params.load(args.params)
    out = Path(args.out)
    if p.profile != "demo":
        # Nothing to build: later stages load model.name_or_path (a hub id or local path) directly.
        write_json(out / "build_info.json", {"init": "pretrained", "name_or_path": p.str("model.name_or_path")})
        print(f"profile {p.profile}: using {p.str('model.name_or_path')}; nothing built")
        return
    from aesthetic_llm.tiny_model import build_tiny_model, describe

    build_tiny_model(out, p.section("model.build"), p.int("levels.num_levels", lo=2), p.int("seed"))
    print(f"built {describe(out)} -> {out}")


if __name__ == "__main__":
    main()
