"""Checkpoint selection scores every checkpoint on val and promotes the best one, not the last one."""

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from aesthetic_llm.io_utils import read_csv, sha256_file, write_csv
from aesthetic_llm.train.selection import candidates, drop_checkpoints, promote, select_checkpoint


def _make_run(tmp_path, tiny_model_dir):
    train_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, train_dir)
    for step, seed in ((5, 1), (10, 2)):
        ckpt = train_dir / f"checkpoint-{step}"
        ckpt.mkdir()
        for name in ("config.json", "generation_config.json"):
            shutil.copy(train_dir / name, ckpt / name)
        weights = load_file(train_dir / "model.safetensors")
        gen = torch.Generator().manual_seed(seed)
        save_file(
            {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in weights.items()}, ckpt / "model.safetensors"
        )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        p = tmp_path / f"v{i}.png"
        Image.fromarray((rng.random((56, 56, 3)) * 255).astype("uint8")).save(p)
        rows.append({"image_id": f"v{i}", "path": str(p), "mos": 1 + 9 * i / 11})
    manifest = tmp_path / "val.csv"
    write_csv(manifest, rows, ["image_id", "path", "mos"])
    return train_dir, manifest


def test_candidates_include_final_and_dedupe(tmp_path, tiny_model_dir):
    train_dir, _ = _make_run(tmp_path, tiny_model_dir)
    assert [(s, p.name) for s, p in candidates(train_dir, 15)] == [
        (5, "checkpoint-5"),
        (10, "checkpoint-10"),
        (15, "run"),
    ]
    assert [(s, p.name) for s, p in candidates(train_dir, 10)] == [(5, "checkpoint-5"), (10, "run")]


def test_best_checkpoint_on_val_srcc_is_promoted(tmp_path, tiny_model_dir):
    train_dir, manifest = _make_run(tmp_path, tiny_model_dir)
    out_csv = tmp_path / "selection.csv"
    sel = select_checkpoint(
        train_dir, 15, manifest, out_csv, {5: 1.0}, num_levels=10, mode="direct", max_new_tokens=4, batch_size=6
    )
    rows = read_csv(out_csv, required=("step", "val_srcc", "eval_loss"))
    assert [int(r["step"]) for r in rows] == [5, 10, 15] and rows[0]["eval_loss"] == "1.0"
    vals = {int(r["step"]): float(r["val_srcc"]) for r in rows}
    best = max(vals, key=lambda k: (vals[k], -k))
    assert sel["selected_step"] == best and sel["selected_val_srcc"] == vals[best] and sel["final_val_srcc"] == vals[15]
    chosen = train_dir / (f"checkpoint-{best}" if best != 15 else "")
    expect = sha256_file(chosen / "model.safetensors")
    promote(Path(sel["selected_path"]), train_dir)
    assert sha256_file(train_dir / "model.safetensors") == expect
    drop_checkpoints(train_dir)
    assert not list(train_dir.glob("checkpoint-*")) and (train_dir / "tokenizer_config.json").exists()


def _curve(steps_val_test: dict[int, tuple[float, float]], photos=("a", "b"), crops=24, seed=0):
    """A synthetic checkpoint curve whose val and test SRCC follow the given noise levels per step."""
    import numpy as np

    out = {}
    for step, (val_noise, test_noise) in steps_val_test.items():
        splits = {}
        for split, noise in (("val", val_noise), ("test", test_noise)):
            ids = [f"{split}-{p}-{k:04d}" for p in photos for k in range(crops)]
            mos = np.linspace(1, 10, len(ids))
            splits[split] = (ids, mos + np.random.default_rng((seed, step)).normal(0, noise, len(ids)), mos)
        out[step] = splits
    return out


def test_selection_study_picks_on_val_and_compares_with_the_last_step():
    from aesthetic_llm.experiments.selection_study import first_crops, pick, summarise

    ids = [f"val-{p}-{k:04d}" for p in ("a", "b") for k in range(5)]
    assert first_crops(ids, 2).tolist() == [0, 1, 5, 6]
    # step 2 is best on val (least noise) and on test; the last step (3) is worse on both
    curves = {s: _curve({1: (3.0, 3.0), 2: (0.2, 0.5), 3: (2.0, 2.5)}, seed=s) for s in (1, 2, 3)}
    assert pick(curves[1], None) == 2 and pick(curves[1], 3) in (1, 2, 3)
    out = summarise(curves, [None], n_boot=200, ci=0.95, seed=0)
    entry = out["by_val_size"][0]
    assert [r["chosen_step"] for r in entry["seeds"]] == [2, 2, 2] and entry["chose_last"] == 0
    assert entry["test_srcc_diff_chosen_minus_last"] > 0 and entry["ci"][0] > 0
    # when the last step is the best, selection changes nothing: difference exactly 0
    flat = {s: _curve({1: (3.0, 3.0), 2: (0.1, 0.5)}, seed=s) for s in (1, 2)}
    entry = summarise(flat, [None], n_boot=100, ci=0.95, seed=0)["by_val_size"][0]
    assert entry["chose_last"] == 2 and entry["test_srcc_diff_chosen_minus_last"] == 0.0
