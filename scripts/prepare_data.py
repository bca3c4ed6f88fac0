#!/usr/bin/env python
"""DVC stage `data`: build per-split manifests, the hard set and the hard pairs.

    python scripts/prepare_data.py [--params params.yaml]          # what params.yaml says (the DVC stage)
    python scripts/prepare_data.py ava --root /data/AVA --out data/ava [--aadb-root /data/AADB] [options]

The `ava` form runs the paper-profile loader on the roots and lists given on the command line only;
other settings it does not name come from params.yaml's paper profile (hard band, seed, subset sizes, …).
"""

import argparse
import json

from aesthetic_llm.data.prepare import prepare
from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import Params


def ava_overrides(args: argparse.Namespace) -> dict:
    """The data.* keys the `ava` subcommand sets; None means 'keep params.yaml's value'."""
    data = {
        "dataset": "ava",
        "ava_root": args.root,
        "out_dir": args.out,
        # Inputs named on the command line are the only inputs: params' roots and lists do not leak in.
        "aadb_root": args.aadb_root or "",
        "ava_url": args.ava_url,
        "aadb_url": args.aadb_url,
        "ava_test_list": args.test_list or "",
        "workers": args.workers,
        "validate_all": args.validate_all or None,
    }
    return {k: v for k, v in data.items() if v is not None}


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    sub = ap.add_subparsers(dest="command")
    ava = sub.add_parser("ava", help="AVA (train/val/test) + AADB test (unseen) from disk or URL")
    ava.add_argument("--params", default=argparse.SUPPRESS, help="base parameters (default params.yaml)")
    ava.add_argument("--profile", default="paper", help="params.yaml profile to start from (default paper)")
    ava.add_argument("--root", required=True, help="AVA root: AVA.txt and images/<id>.jpg")
    ava.add_argument("--out", required=True, help="output directory for manifests and stats.json")
    ava.add_argument("--aadb-root", help="AADB root (imgListFiles_label/, datasetImages_*/); its test split = unseen")
    ava.add_argument("--ava-url", help="archive to fetch when --root does not exist")
    ava.add_argument("--aadb-url", help="archive to fetch when --aadb-root does not exist")
    ava.add_argument("--test-list", help="official test id list (e.g. generic_test.jpgl), relative to --root")
    ava.add_argument("--workers", type=int, help="image-check processes (default data.workers or 2)")
    ava.add_argument("--validate-all", action="store_true", help="decode every image, not just the chosen subset")
    ava.add_argument("--seed", type=int)
    for split in ("train", "val", "test", "unseen"):
        ava.add_argument(f"--{split}", type=int, metavar="N", help=f"subset size for {split}")
    args = ap.parse_args()

    if args.command == "ava":
        params = Params.load(args.params, profile=args.profile)
        data = params.data.setdefault("data", {})
        data.update(ava_overrides(args))
        sizes = {s: getattr(args, s) for s in ("train", "val", "test", "unseen") if getattr(args, s) is not None}
        data["subset_sizes"] = {**(data.get("subset_sizes") or {}), **sizes}
        if args.seed is not None:
            params.data["seed"] = args.seed
    else:
        params = Params.load(args.params)
    stats = prepare(params)
    print(json.dumps(stats["counts"]))


if __name__ == "__main__":
    main()
