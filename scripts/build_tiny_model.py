#!/usr/bin/env python
"""DVC stage `model`: build the demo's tiny Qwen2-VL (random init): what `base` pre-trains."""

from pathlib import Path

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.io_utils import write_json
from aesthetic_llm.params import stage_args


@cli_entry
def main() -> None:
    p, args = stage_args(__doc__, out="models/init")
    out = Path(args.out)
    if p.profile != "demo":
        # Nothing to build: later stages load model.name_or_path (a hub id or local path) directly.
        write_json(out / "build_info.json", {"init": "pretrained", "name_or_path": p.str("model.name_or_path")})
        print(f"profile {p.profile}: using {p.str('model.name_or_path')}; nothing built")
        return
    from aesthetic_llm.model.tiny import build_tiny_model, describe

    build_tiny_model(out, p.section("model.build"), p.int("levels.num_levels", lo=2), p.int("seed"))
    print(f"built {describe(out)} -> {out}")


if __name__ == "__main__":
    main()
