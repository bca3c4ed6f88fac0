import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from aesthetic_llm.demo_data import hard_pairs
from aesthetic_llm.errors import UserError
from aesthetic_llm.evaluate import evaluate
from aesthetic_llm.metrics import (
    bootstrap_ci,
    krcc,
    pairwise_accuracy,
    pairwise_accuracy_ci,
    plcc,
    srcc,
    summarise,
)

from .conftest import ROOT


def test_correlations_equal_scipy_with_ties():
    rng = np.random.default_rng(0)
    mos = np.round(rng.uniform(1, 10, 200), 1)
    pred = np.round(mos + rng.normal(0, 2, 200))  # many ties
    assert abs(srcc(pred, mos) - stats.spearmanr(pred, mos).statistic) < 1e-9
    assert abs(plcc(pred, mos) - stats.pearsonr(pred, mos).statistic) < 1e-9
    assert abs(krcc(pred, mos) - stats.kendalltau(pred, mos, variant="b").statistic) < 1e-9


def test_degenerate_inputs_give_none_not_errors():
    mos = np.array([1.0, 2.0, 3.0, 4.0])
    assert srcc(np.full(4, 5.0), mos) is None
    assert plcc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) is None
    m = summarise(np.full(4, 5.0), mos, n_boot=50, ci=0.95, seed=0, threshold=5)
    assert m["srcc"] is None and m["srcc_ci"] is None and m["n"] == 4


def test_bootstrap_ci_contains_point_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 10, 100)
    pred = mos + rng.normal(0, 1.5, 100)
    ci = bootstrap_ci(pred, mos, srcc, 300, 0.95, seed=7)
    assert ci[0] < srcc(pred, mos) < ci[1]
    assert ci == bootstrap_ci(pred, mos, srcc, 300, 0.95, seed=7)


def test_pairwise_accuracy_counts_prediction_ties_half():
    mos = {"a": 5.0, "b": 5.1, "c": 5.2}
    pairs = [("a", "b", 0.1), ("b", "c", 0.1), ("a", "c", 0.2)]
    assert pairwise_accuracy({"a": 1.0, "b": 2.0, "c": 3.0}, pairs, mos) == (1.0, 3)
    assert pairwise_accuracy({"a": 3.0, "b": 2.0, "c": 2.0}, pairs, mos) == (round(0.5 / 3, 4), 3)
    assert pairwise_accuracy({"a": 1.0}, pairs, mos) == (None, 0)


def _close_pairs(n=120, noise=1.0, seed=3):
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(n)]
    mos = dict(zip(ids, rng.uniform(1, 10, n), strict=True))
    pred = {i: m + rng.normal(0, noise) for i, m in mos.items()}
    return ids, mos, pred, hard_pairs(ids, [mos[i] for i in ids], 0.7)


def test_pair_accuracy_ci_resamples_images_and_covers_the_estimate():
    ids, mos, pred, pairs = _close_pairs()
    acc, n = pairwise_accuracy(pred, pairs, mos)
    ci = pairwise_accuracy_ci(pred, pairs, mos, n_boot=300, ci=0.95, seed=0)
    assert n > 100 and ci[0] < acc < ci[1]
    assert ci == pairwise_accuracy_ci(pred, pairs, mos, n_boot=300, ci=0.95, seed=0)
    # Perfect predictions: every resample is all hits.
    assert pairwise_accuracy_ci(mos, pairs, mos, n_boot=50, ci=0.95, seed=0) == [1.0, 1.0]
    # Random predictions: the interval covers chance.
    rng = np.random.default_rng(9)
    noise = {i: float(rng.normal()) for i in ids}
    lo, hi = pairwise_accuracy_ci(noise, pairs, mos, n_boot=300, ci=0.95, seed=0)
    assert lo < 0.5 < hi


def test_paired_pair_accuracy_difference():
    ids, mos, good, pairs = _close_pairs(noise=0.3)
    _, _, bad, _ = _close_pairs(noise=3.0, seed=4)
    assert pairwise_accuracy_ci(good, pairs, mos, n_boot=100, ci=0.95, seed=0, other_by_id=good) == [0.0, 0.0]
    lo, hi = pairwise_accuracy_ci(good, pairs, mos, n_boot=300, ci=0.95, seed=0, other_by_id=bad)
    assert 0 < lo < hi  # the sharper model wins on the same pairs
    missing = {k: v for k, v in bad.items() if k != pairs[0][0]}
    assert pairwise_accuracy_ci(good, pairs, mos, n_boot=50, ci=0.95, seed=0, other_by_id=missing) is None


def test_evaluate_reports_hard_pair_difference_to_the_stage_before(tmp_path):
    ids, mos, _, pairs = _close_pairs()
    rng = np.random.default_rng(5)
    rows = ["image_id,model,split,pred,mos"]
    for model, noise in (("zero_shot", 6.0), ("sft", 2.0), ("dpo", 0.3)):
        for i in ids:
            pred = mos[i] + rng.normal(0, noise)
            rows += [f"{i},{model},test,{pred:.4f},{mos[i]:.4f}", f"{i},{model},hard,{pred:.4f},{mos[i]:.4f}"]
    p = _write(tmp_path / "p.csv", "\n".join(rows) + "\n")
    pp = _write(tmp_path / "pairs.csv", "image_a,image_b,delta\n" + "".join(f"{a},{b},{d}\n" for a, b, d in pairs))
    result = evaluate(p, pp, n_boot=200, seed=0)["models"]
    hard = {m: e["hard"] for m, e in result.items()}
    test = {m: e["test"] for m, e in result.items()}
    # SRCC: the paired difference to the stage before, on the same images
    assert test["dpo"]["srcc_diff_vs_sft"] == pytest.approx(test["dpo"]["srcc"] - test["sft"]["srcc"], abs=2e-4)
    assert test["dpo"]["srcc_diff_vs_sft_ci"][0] > 0 and test["dpo"]["p_vs_sft"] < 0.05
    assert "srcc_diff_vs_zero_shot" in test["sft"] and "p_vs_sft" not in test["sft"]
    assert not any(k.startswith("srcc_diff") for k in test["zero_shot"])
    assert "pair_acc_diff_vs_sft" not in hard["sft"] and "pair_acc_diff_vs_zero_shot" in hard["sft"]
    d = hard["dpo"]
    assert d["pair_acc_diff_vs_sft"] == round(d["pair_acc"] - hard["sft"]["pair_acc"], 4)
    assert d["pair_acc_diff_vs_sft_ci"][0] > 0 and d["pair_acc_ci"][0] > hard["sft"]["pair_acc_ci"][0]


def _write(path, text):
    path.write_text(text)
    return path


def test_evaluate_reports_every_model_and_split(tmp_path):
    rng = np.random.default_rng(2)
    rows = ["image_id,model,split,pred,text_level,mos"]
    for model, noise in (("zero_shot", 5.0), ("sft", 0.5)):
        for i in range(40):
            mos = 1 + 9 * i / 39
            rows.append(f"img{i},{model},test,{mos + rng.normal(0, noise):.4f},{round(mos)},{mos:.4f}")
    p = _write(tmp_path / "p.csv", "\n".join(rows) + "\n")
    m = evaluate(p, None, n_boot=200, seed=0)
    assert set(m["models"]) == {"zero_shot", "sft"}
    assert m["models"]["sft"]["test"]["srcc"] > m["models"]["zero_shot"]["test"]["srcc"]
    assert m["models"]["sft"]["test"]["p_vs_zero_shot"] < 0.05
    assert m["models"]["sft"]["test"]["text_level_rate"] == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image_id,model,split,mos\na,m,test,1\n", r"missing column\(s\) pred"),
        (
            "image_id,model,split,pred,mos\na,m,test,1.0,2\nb,m,test,oops,3\n",
            r"p\.csv:3: column pred: not a number \('oops'\)",
        ),
        ("image_id,model,split,pred,mos\na,m,test,nan,2\n", r"p\.csv:2: column pred: not finite"),
    ],
)
def test_bad_predictions_are_one_line_errors_with_row(tmp_path, content, message):
    p = _write(tmp_path / "p.csv", content)
    with pytest.raises(UserError, match=message):
        evaluate(p, None, n_boot=0)


def test_evaluate_cli_exit_code(tmp_path):
    p = _write(tmp_path / "p.csv", "image_id,model,split,mos\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/evaluate.py"), "--predictions", str(p), "--out", str(tmp_path / "m.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "missing column(s) pred" in proc.stderr
    assert not (tmp_path / "m.json").exists()


def test_plcc_logistic_matches_an_independent_reference_fit():
    from scipy.optimize import least_squares

    from aesthetic_llm.metrics import logistic4, plcc_logistic

    rng = np.random.default_rng(4)
    pred = rng.uniform(0, 1, 300)
    mos = logistic4(pred, 9.0, 1.5, 0.5, 0.08) + rng.normal(0, 0.4, 300)  # strongly non-linear

    # Reference: a different optimiser from a different start on the same model.
    def resid(b):
        return logistic4(pred, *b) - mos

    ref = least_squares(resid, x0=[8.0, 2.0, 0.4, 0.2]).x
    expect = stats.pearsonr(logistic4(pred, *ref), mos).statistic
    got = plcc_logistic(pred, mos)
    assert abs(got - expect) < 1e-4
    assert got > plcc(pred, mos) + 0.02  # the fit linearises the relation
    assert plcc_logistic(np.full(10, 3.0), np.arange(10.0)) is None


def test_plcc_logistic_cannot_reward_a_backwards_ranking():
    from aesthetic_llm.metrics import plcc_logistic

    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 10, 200)
    backwards = -mos + rng.normal(0, 1, 200)
    assert plcc(backwards, mos) < -0.8
    assert plcc_logistic(backwards, mos) is None or plcc_logistic(backwards, mos) < 0.1


def test_results_table_shows_hard_pair_ci_and_difference_to_the_stage_before():
    from aesthetic_llm.report import results_table

    hard = {"n": 10, "pair_acc": 0.6, "n_pairs": 40, "pair_acc_ci": [0.5, 0.7]}
    metrics = {
        "models": {
            "sft": {"hard": hard},
            "dpo": {
                "hard": dict(hard, pair_acc_diff_vs_sft=0.05, pair_acc_diff_vs_sft_ci=[-0.01, 0.11]),
                "test": {"srcc_diff_vs_sft": 0.054, "srcc_diff_vs_sft_ci": [0.001, 0.1]},
            },
        }
    }
    rows = {line.split(" | ")[0].strip("| "): line for line in results_table(metrics).splitlines()[2:]}
    assert "0.600 [0.50, 0.70] (n=40)" in rows["sft"] and "vs" not in rows["sft"]
    assert "test SRCC 0.054 [0.00, 0.10]; pairs 0.050 [-0.01, 0.11] (vs sft)" in rows["dpo"]


def test_preference_pairs_section_names_the_sources_kept_out_of_sft(tmp_path):
    import json

    from aesthetic_llm.report import preference_pairs_section

    stats = {"strategy": "on_policy", "pairs": 3, "images": 4, "images_with_pairs": 3, "level_gaps": {"1": 3}}
    path = tmp_path / "pair_stats.json"
    path.write_text(json.dumps(dict(stats, sft_holdout_sources=[])))
    assert "kept out of SFT" not in "\n".join(preference_pairs_section(path))
    path.write_text(json.dumps(dict(stats, sft_holdout_sources=["brick", "ihc"])))
    assert "kept out of SFT (`dpo.sft_holdout`): brick, ihc." in "\n".join(preference_pairs_section(path))
