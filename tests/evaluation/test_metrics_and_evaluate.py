import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from aesthetic_llm.data.splits import hard_pairs
from aesthetic_llm.errors import UserError
from aesthetic_llm.evaluation.evaluate import evaluate
from aesthetic_llm.evaluation.metrics import krcc, pairwise_accuracy, plcc, srcc, summarise

from ..conftest import ROOT


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
    m = summarise(np.full(4, 5.0), mos, threshold=5)
    assert m["srcc"] is None and m["n"] == 4


def test_pairwise_accuracy_counts_prediction_ties_half():
    mos = {"a": 5.0, "b": 5.1, "c": 5.2}
    pairs = [("a", "b", 0.1), ("b", "c", 0.1), ("a", "c", 0.2)]
    assert pairwise_accuracy({"a": 1.0, "b": 2.0, "c": 3.0}, pairs, mos) == (1.0, 3)
    assert pairwise_accuracy({"a": 3.0, "b": 2.0, "c": 2.0}, pairs, mos) == (0.5 / 3, 3)  # full precision
    assert pairwise_accuracy({"a": 1.0}, pairs, mos) == (None, 0)


def _close_pairs(n=120, noise=1.0, seed=3):
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(n)]
    mos = dict(zip(ids, rng.uniform(1, 10, n), strict=True))
    pred = {i: m + rng.normal(0, noise) for i, m in mos.items()}
    return ids, mos, pred, hard_pairs(ids, [mos[i] for i in ids], 0.7)


def test_evaluate_reports_hard_pair_difference_to_the_stage_before(tmp_path):
    ids, mos, _, pairs = _close_pairs()
    rng = np.random.default_rng(5)
    rows = ["image_id,model,split,pred,mos"]
    for model, noise in (("zero_shot", 6.0), ("sft", 2.0), ("dpo", 0.3)):
        for i in ids:
            pred = mos[i] + rng.normal(0, noise)
            rows += [f"{i},{model},test,{pred:.17g},{mos[i]:.17g}", f"{i},{model},hard,{pred:.17g},{mos[i]:.17g}"]
    p = _write(tmp_path / "p.csv", "\n".join(rows) + "\n")
    pp = _write(tmp_path / "pairs.csv", "image_a,image_b,delta\n" + "".join(f"{a},{b},{d}\n" for a, b, d in pairs))
    result = evaluate([p], pp, n_boot=200, seed=0)["models"]
    hard = {m: e["hard"] for m, e in result.items()}
    test = {m: e["test"] for m, e in result.items()}
    # SRCC: the paired difference to the stage before, on the same images, at full precision
    assert test["dpo"]["srcc_diff_vs_sft"] == pytest.approx(test["dpo"]["srcc"] - test["sft"]["srcc"], abs=1e-12)
    assert test["dpo"]["srcc_diff_vs_sft_ci"][0] > 0 and test["dpo"]["p_vs_sft"] < 0.05
    assert "srcc_diff_vs_zero_shot" in test["sft"] and "p_vs_sft" not in test["sft"]
    assert not any(k.startswith("srcc_diff") for k in test["zero_shot"])
    assert "pair_acc_diff_vs_sft" not in hard["sft"] and "pair_acc_diff_vs_zero_shot" in hard["sft"]
    d = hard["dpo"]
    assert d["pair_acc_diff_vs_sft"] == pytest.approx(d["pair_acc"] - hard["sft"]["pair_acc"], abs=1e-12)
    assert d["pair_acc_diff_vs_sft_ci"][0] > 0 and d["pair_acc_ci"][0] > hard["sft"]["pair_acc_ci"][0]
    assert d["pair_acc_diff_vs_sft_p"] < 0.05


def _seeded_predictions(tmp_path, seeds=(1, 2, 3), photos=("a", "b", "c"), crops=40, seed_shift=0.0):
    """A base file (zero_shot, no seed) and one file per training seed (sft and dpo), crops of a few photos."""
    rng = np.random.default_rng(11)
    ids = [f"test-{ph}-{k:04d}" for ph in photos for k in range(crops)]
    mos = rng.uniform(1, 10, len(ids))
    head = "image_id,model,split,seed,pred,mos"
    base = [head] + [f"{i},zero_shot,test,,{m + rng.normal(0, 6):.17g},{m:.17g}" for i, m in zip(ids, mos, strict=True)]
    files = [_write(tmp_path / "base.csv", "\n".join(base) + "\n")]
    for s in seeds:
        shift = {"sft": rng.normal(0, seed_shift), "dpo": rng.normal(0, seed_shift)}
        rows = [head]
        for model, noise in (("sft", 2.0), ("dpo", 2.0)):
            rows += [
                f"{i},{model},test,{s},{m * (1 + shift[model]) + rng.normal(0, noise):.17g},{m:.17g}"
                for i, m in zip(ids, mos, strict=True)
            ]
        files.append(_write(tmp_path / f"seed{s}.csv", "\n".join(rows) + "\n"))
    return files


def test_seed_means_spreads_and_per_seed_values(tmp_path):
    files = _seeded_predictions(tmp_path)
    m = evaluate(files, None, seeds=[3, 1, 2], n_boot=200, seed=0)
    assert m["settings"]["seeds"] == [3, 1, 2]
    sft = m["models"]["sft"]["test"]
    per = []
    for s in (3, 1, 2):  # in settings.seeds order, each from its own file
        rows = [r.split(",") for r in (tmp_path / f"seed{s}.csv").read_text().splitlines()[1:]]
        rows = [r for r in rows if r[1] == "sft"]
        per.append(stats.spearmanr([float(r[4]) for r in rows], [float(r[5]) for r in rows]).statistic)
    assert sft["srcc_seeds"] == pytest.approx(per, abs=1e-12) and sft["srcc"] == pytest.approx(np.mean(per))
    assert sft["srcc_spread"] == [min(sft["srcc_seeds"]), max(sft["srcc_seeds"])]
    assert sft["trained"] and sft["n_sources"] == 3 and sft["n"] == 120
    zs = m["models"]["zero_shot"]["test"]
    assert not zs["trained"] and len(set(zs["srcc_seeds"])) == 1 and len(zs["srcc_seeds"]) == 3
    diff = sft["srcc_diff_vs_zero_shot_seeds"]
    assert diff == pytest.approx([a - zs["srcc"] for a in sft["srcc_seeds"]])
    assert (
        m["models"]["dpo"]["test"]["srcc_diff_vs_sft_ci"][0] < 0 < m["models"]["dpo"]["test"]["srcc_diff_vs_sft_ci"][1]
    )


def test_interval_accounts_for_training_seeds(tmp_path):
    """Identical seeds add nothing to the interval (it is the one seed's photo x crop interval, draw for draw);
    seeds that disagree widen it well beyond any single seed's."""
    rng = np.random.default_rng(3)
    ids = [f"test-{ph}-{k:04d}" for ph in "abc" for k in range(40)]
    mos = rng.uniform(1, 10, len(ids))

    def files(noises, sub):
        (tmp_path / sub).mkdir()
        out = []
        for s, noise in enumerate(noises, 1):
            pred = mos + np.random.default_rng(s).normal(0, noise, len(ids))
            rows = ["image_id,model,split,seed,pred,mos"]
            rows += [f"{i},sft,test,{s},{p:.17g},{m:.17g}" for i, p, m in zip(ids, pred, mos, strict=True)]
            out.append(_write(tmp_path / sub / f"seed{s}.csv", "\n".join(rows) + "\n"))
        return out

    def ci(paths, seeds):
        return evaluate(paths, None, seeds=seeds, n_boot=400, seed=0)["models"]["sft"]["test"]["srcc_ci"]

    one = files([1.0], "one")
    same = [
        _write(tmp_path / "one" / f"copy{s}.csv", one[0].read_text().replace(",sft,test,1,", f",sft,test,{s},"))
        for s in (2, 3)
    ]
    assert ci([one[0], *same], [1, 2, 3]) == pytest.approx(ci(one, [1]), abs=1e-12)
    mixed = files([0.3, 4.0, 1.5], "mixed")
    single = [ci([f], [s]) for s, f in enumerate(mixed, 1)]
    lo, hi = ci(mixed, [1, 2, 3])
    assert hi - lo > 1.3 * max(b - a for a, b in single)


def test_a_seed_missing_from_the_predictions_is_an_error(tmp_path):
    files = _seeded_predictions(tmp_path, seeds=(1, 2))
    with pytest.raises(
        UserError,
        match=r"model '(sft|dpo)' split 'test': predictions for seeds \['1', '2'\], expected \['1', '2', '3'\]",
    ):
        evaluate(files, None, seeds=[1, 2, 3], n_boot=10)
    with pytest.raises(UserError, match="seed2.csv: file not found"):
        evaluate([files[0], tmp_path / "seed2.csv", tmp_path / "missing" / "seed2.csv"], None, n_boot=10)


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
    m = evaluate([p], None, n_boot=200, seed=0)
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
        evaluate([p], None, n_boot=0)


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

    from aesthetic_llm.evaluation.metrics import logistic4, plcc_logistic

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
    from aesthetic_llm.evaluation.metrics import plcc_logistic

    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 10, 200)
    backwards = -mos + rng.normal(0, 1, 200)
    assert plcc(backwards, mos) < -0.8
    assert plcc_logistic(backwards, mos) is None or plcc_logistic(backwards, mos) < 0.1


def test_results_and_comparison_tables_show_seed_spread_and_verdicts():
    from aesthetic_llm.evaluation.tables import comparisons_table, results_table, targets

    def e(v, ci, seeds):
        return {"trained": True, "srcc": v, "srcc_ci": ci, "srcc_seeds": seeds, "srcc_spread": [min(seeds), max(seeds)]}

    hard = {
        "pair_acc": 0.6,
        "n_pairs": 40,
        "pair_acc_ci": [0.5, 0.7],
        "trained": True,
        "pair_acc_seeds": [0.58, 0.62],
        "pair_acc_spread": [0.58, 0.62],
    }
    metrics = {
        "models": {
            "zero_shot": {"test": {"trained": False, "srcc": 0.2, "srcc_ci": [0.1, 0.3], "srcc_seeds": [0.2, 0.2]}},
            "sft": {
                "test": dict(
                    e(0.62, [0.5, 0.7], [0.6, 0.64]),
                    srcc_diff_vs_zero_shot=0.42,
                    srcc_diff_vs_zero_shot_ci=[0.3, 0.5],
                    srcc_diff_vs_zero_shot_seeds=[0.4, 0.44],
                ),
                "hard": hard,
            },
            "dpo": {
                "hard": dict(
                    hard,
                    pair_acc_diff_vs_sft=0.01,
                    pair_acc_diff_vs_sft_ci=[-0.02, 0.03],
                    pair_acc_diff_vs_sft_seeds=[-0.01, 0.03],
                )
            },
        }
    }
    rows = {line.split(" | ")[0].strip("| "): line for line in results_table(metrics).splitlines()[2:]}
    assert "0.620 [0.50, 0.70] (0.60–0.64)" in rows["sft"] and "0.600 [0.50, 0.70] (0.58–0.62) (n=40)" in rows["sft"]
    assert "0.200 [0.10, 0.30] |" in rows["zero_shot"]  # no seed spread for a model not trained here
    table = comparisons_table(metrics)
    assert "| SFT − zero-shot | test SRCC | 0.420 [0.30, 0.50] | +0.400, +0.440 | CI above 0 |" in table
    assert "| DPO − SFT | hard-pair accuracy | 0.010 [-0.02, 0.03] | -0.010, +0.030 | within noise |" in table
    t = "\n".join(targets(metrics))
    assert "SFT test SRCC ≥ 0.6: met" in t and "zero-shot + 0.3 on test SRCC: met" in t
    assert "DPO ≥ SFT on hard-pair accuracy: met on the seed mean (difference 0.010 [-0.02, 0.03]; within noise)" in t


def test_preference_pairs_section_lists_each_seed_and_the_sources_kept_out_of_sft(tmp_path):
    import json

    from aesthetic_llm.evaluation.tables import preference_pairs_section

    stats = {"strategy": "on_policy", "pairs": 3, "images": 4, "images_with_pairs": 3, "level_gaps": {"1": 3}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(dict(stats, sft_holdout_sources=[])))
    b.write_text(json.dumps(dict(stats, pairs=5, sft_holdout_sources=["brick", "ihc"])))
    text = "\n".join(preference_pairs_section({1: a, 2: b, 3: tmp_path / "missing.json"}))
    assert "- seed 1, strategy `on_policy`: 3 pairs" in text and "- seed 2, strategy `on_policy`: 5 pairs" in text
    assert "seed 3" not in text and text.count("(`dpo.sft_holdout`): brick, ihc") == 1
