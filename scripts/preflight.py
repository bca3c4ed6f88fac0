#!/usr/bin/env python
"""Select a profile in params.yaml and check every parameter and input it needs (run by `make reproduce`)."""

import argparse

from aesthetic_llm.errors import cli_entry
from aesthetic_llm.params import Params, set_profile, set_seeds
from aesthetic_llm.preflight import check


@cli_entry
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", help="demo | paper (rewrites the `profile:` line of params.yaml if different)")
    ap.add_argument("--seeds", type=int, help="number of training seeds (rewrites the `seeds:` line of params.yaml)")
    args = ap.parse_args()
    if args.profile and set_profile(args.params, args.profile):
        print(f"{args.params}: profile set to {args.profile}")
    if args.seeds is not None:
        print(f"{args.params}: seeds set to {set_seeds(args.params, args.seeds)}")
    params = Params.load(args.params)
    check(params)
    print(f"preflight ok: profile {params.profile}")


if __name__ == "__main__":
    main()
