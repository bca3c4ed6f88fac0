#!/usr/bin/env python
"""DVC stage `base` (frozen; `make base-model`): pre-train the demo's tiny Qwen2-VL on measured properties.

Starts from the `model` stage's random init, reads only the train split's source photos, never a
score, and writes a checkpoint plus pretrain_record.json (params, corpus recipe, seed, curve, sha256)
to base.out_dir, which is committed: `make reproduce` uses it and never retrains it.
"""

import argparse
import json
import sys

from aesthetic_llm.errors import UserError, cli_entry
from aesthetic_llm.params import Params


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--init", default="models/init", help="the random-init checkpoint (the `model` stage)")
    ap.add_argument("--out", help="output checkpoint directory (default base.out_dir)")
    ap.add_argument(
        "--device", default="cpu", help="cpu (the committed base) or cuda (not bit-identical; docs/demo-base-model.md)"
    )
    args = ap.parse_args()
    p = Params.load(args.params)
    if p.profile != "demo":
        raise UserError(f"{p.source}: the base stage pre-trains the demo model only (profile is {p.profile!r})")
    import torch

    from aesthetic_llm.data.demo import assign_sources, load_sources
    from aesthetic_llm.model.pretrain import pretrain

    torch.set_num_threads(int(p.int("base.threads", lo=1)))
    sources = load_sources()
    train_names = assign_sources(p)["train"]
    photos = [img for name in train_names for img in sources[name]]
    cfg = dict(p.section("base"))
    cfg.pop("out_dir", None)
    cfg["train_sources"] = train_names
    cfg["num_levels"] = p.int("levels.num_levels", lo=2)
    record = pretrain(
        args.init,
        args.out or p.str("base.out_dir"),
        photos,
        cfg,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        device=args.device,
    )
    print(json.dumps(record["final"]))


if __name__ == "__main__":
    main()
