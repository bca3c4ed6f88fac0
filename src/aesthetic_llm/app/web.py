"""The web page to try a model: score a photo, compare two, score a batch; the same calls as a Gradio API.

Endpoints (gradio_client: `Client(url).predict(..., api_name="/score")`): `/score` (file, mode) -> summary,
level distribution, critique; `/compare` (file A, file B, mode) -> summary, both distributions; `/batch`
(files, mode) -> table, CSV file, notes. An unreadable upload is an error message naming the file, in the page
and to API callers; the app keeps serving.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aesthetic_llm.app.compare import prob_first_better
from aesthetic_llm.levels import SCORE_MODES
from aesthetic_llm.scorer import ImageScore, Scorer

MODE_HELP = "cot: the model writes its critique, then the level is read · direct: the level only · cot_sampled: several critiques averaged"
TABLE_FIELDS = ["file", "score", "level", "critique"]


class ScoringError(ValueError):
    """An upload that cannot be scored; its message is shown in the page."""


def _name(path: str | Path) -> str:
    return Path(path).name


def score_files(scorer: Scorer, paths: list[str], mode: str) -> list[ImageScore]:
    """Score uploads; an unreadable one is a ScoringError naming it (nothing is scored then)."""
    if mode not in SCORE_MODES:
        raise ScoringError(f"mode {mode!r}: expected one of {', '.join(SCORE_MODES)}")
    results = scorer.score(paths, critique=True, mode=mode)
    if scorer.skipped:
        bad = "; ".join(f"{_name(p)}: {why}" for p, why in scorer.skipped)
        raise ScoringError(f"cannot score {bad} (is it an image file?)")
    return results


def distribution(results: list[tuple[str, ImageScore]]) -> Any:
    """Long table (level, probability, photo) for a bar chart of each photo's level distribution."""
    import pandas as pd

    rows = [
        {"level": str(i + 1), "probability": p, "photo": label}
        for label, r in results
        for i, p in enumerate(r.probs or [])
    ]
    return pd.DataFrame(rows, columns=["level", "probability", "photo"])


def summary_line(r: ImageScore) -> str:
    written = f", written level {r.level}" if r.level is not None else ""
    return f"**{_name(r.path)}**: score **{r.score:.2f}** / 10{written}"


def score_one(scorer: Scorer, path: str | None, mode: str) -> tuple[str, Any, str]:
    if not path:
        raise ScoringError("upload a photo first")
    (r,) = score_files(scorer, [path], mode)
    return summary_line(r), distribution([(_name(path), r)]), r.critique or ""


def compare_two(scorer: Scorer, path_a: str | None, path_b: str | None, mode: str) -> tuple[str, Any]:
    if not path_a or not path_b:
        raise ScoringError("upload two photos to compare")
    a, b = score_files(scorer, [path_a, path_b], mode)
    p = prob_first_better(a.probs or [], b.probs or [])
    text = f"{summary_line(a)}  \n{summary_line(b)}  \nP(first is better) = **{p:.3f}**"
    return text, distribution([(f"A: {_name(path_a)}", a), (f"B: {_name(path_b)}", b)])


def score_batch(scorer: Scorer, paths: list[str] | None, mode: str, progress: Any = None) -> tuple[Any, str, str]:
    """Every readable upload scored (unreadable ones listed, not fatal), as a table and a CSV file."""
    import pandas as pd

    from aesthetic_llm.io_utils import write_csv

    if not paths:
        raise ScoringError("upload one or more photos")
    rows, skipped, step = [], [], max(1, scorer.batch_size)
    for start in range(0, len(paths), step):
        if progress is not None:
            progress((start, len(paths)), desc="scoring", unit="photos")
        for r in scorer.score(paths[start : start + step], critique=True, mode=mode):
            rows.append({"file": _name(r.path), "score": r.score, "level": r.level, "critique": r.critique or ""})
        skipped += scorer.skipped
    table = pd.DataFrame(rows, columns=TABLE_FIELDS).sort_values("score", ascending=False, kind="stable")
    out = Path(tempfile.mkdtemp(prefix="aesthetic_app_")) / "scores.csv"
    write_csv(out, table.to_dict("records"), TABLE_FIELDS)
    notes = f"{len(rows)} photo(s) scored"
    if skipped:
        notes += "; skipped " + "; ".join(f"{_name(p)}: {why}" for p, why in skipped)
    return table, str(out), notes


def _shown(fn: Any, *args: Any) -> Any:
    """Run a handler; a ScoringError becomes the message Gradio shows in the page (and returns to API callers)."""
    import gradio as gr

    try:
        return fn(*args)
    except ScoringError as exc:
        raise gr.Error(str(exc)) from None


def build_app(scorer: Scorer, title: str) -> Any:
    """The Blocks app around one loaded scorer (the model loads once, before the page is served)."""
    import gradio as gr

    # Named wrappers: their parameter names are the API's (`/score` takes photo, mode).
    def score(photo: str | None, mode: str) -> tuple[str, Any, str]:
        return _shown(score_one, scorer, photo, mode)

    def compare(photo_a: str | None, photo_b: str | None, mode: str) -> tuple[str, Any]:
        return _shown(compare_two, scorer, photo_a, photo_b, mode)

    def batch(photos: list[str] | None, mode: str, progress=gr.Progress()) -> tuple[Any, str, str]:  # noqa: B008
        return _shown(score_batch, scorer, photos, mode, progress)  # Gradio injects the tracker by its default

    levels = [str(i + 1) for i in range(scorer.level_scorer.num_levels)]

    def bars(**kw: Any) -> Any:
        return gr.BarPlot(x="level", y="probability", color="photo", sort=levels, y_lim=[0, 1], **kw)

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# Aesthetic score\nModel: `{title}` · scores on AVA's 1–10 scale")
        mode = gr.Radio(list(SCORE_MODES), value=scorer.mode, label="Scoring mode", info=MODE_HELP)
        with gr.Tab("Score a photo"):
            photo = gr.File(file_types=["image"], type="filepath", label="Photo", elem_id="score-file")
            go = gr.Button("Score", variant="primary", elem_id="score-button")
            summary = gr.Markdown(elem_id="score-summary")
            dist = bars(label="Probability of each level", elem_id="score-bars")
            critique = gr.Textbox(label="Critique", lines=4, elem_id="score-critique")
            go.click(score, [photo, mode], [summary, dist, critique], api_name="score")
        with gr.Tab("Which is better?"):
            with gr.Row():
                first = gr.File(file_types=["image"], type="filepath", label="Photo A", elem_id="compare-a")
                second = gr.File(file_types=["image"], type="filepath", label="Photo B", elem_id="compare-b")
            go2 = gr.Button("Compare", variant="primary", elem_id="compare-button")
            verdict = gr.Markdown(elem_id="compare-summary")
            dist2 = bars(label="Level distributions", elem_id="compare-bars")
            go2.click(compare, [first, second, mode], [verdict, dist2], api_name="compare")
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Photos")
            go3 = gr.Button("Score all", variant="primary", elem_id="batch-button")
            notes = gr.Markdown(elem_id="batch-notes")
            table = gr.Dataframe(headers=TABLE_FIELDS, label="Scores (click a header to sort)", interactive=False)
            csv = gr.File(label="CSV")
            go3.click(batch, [files, mode], [table, csv, notes], api_name="batch")
    return app
