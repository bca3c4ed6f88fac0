"""CoT critiques from any OpenAI-compatible vision endpoint: concurrent, resumable, never paying twice.

Each image is sent (resized, as a base64 data URL) with CRITIC_INSTRUCTION for its true level. Answers are
validated ('… Rating Level: N' at the end, N the requested level, no score stated in the analysis: see
score_leak; ordinary numbers such as f/1.8, ISO 3200 or "two people" are kept) and appended,
one fsynced JSON line each, to a log keyed by content: sha256(model, prompt version + text, image sha256,
generation params). Anything already in the log is never requested again, so a rerun or a restart after a
kill resumes where it stopped. At the end the output is rewritten atomically in manifest order and every
image without an answer is listed, with the latest reason, in `<out>.failures.jsonl`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from PIL import Image

from aesthetic_llm.critic import measure
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import read_csv, sha256_file, write_jsonl
from aesthetic_llm.levels import mos_to_level, parse_rating_level
from aesthetic_llm.params import Params
from aesthetic_llm.prompts import CRITIC_INSTRUCTION, PROMPT_VERSION, RATING_PREFIX

# USD per 1M tokens (input, output): approximate list prices, override with params annotate.api.prices.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "qwen-vl-plus": {"input": 0.21, "output": 0.63},
    "qwen-vl-max": {"input": 0.80, "output": 3.20},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
}
DASHSCOPE_URL = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
_TAIL_RE = re.compile(re.escape(RATING_PREFIX) + r"\s*(\d+)\s*\.?\s*$")
FATAL_STATUS = (401, 403, 404)  # wrong key / no access / unknown model: no image can succeed


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DASHSCOPE_URL
    model: str = "qwen-vl-plus"
    key_env: str = ""  # "" = DASHSCOPE_API_KEY for DashScope URLs, else OPENAI_API_KEY
    num_levels: int = 10
    concurrency: int = 8
    max_tries: int = 6  # requests per image, all causes together
    max_invalid: int = 2  # re-asks after an answer that fails validation
    timeout_s: float = 60.0
    max_side: int = 768
    max_tokens: int = 300
    temperature: float = 0.2
    max_cost_usd: float = 0.0  # 0 = no limit
    prices: dict[str, dict[str, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    cache: str = ""  # "" = the output file is its own cache
    progress_s: float = 10.0

    @classmethod
    def from_params(cls, params: Params | None, **overrides: Any) -> ApiConfig:
        """Defaults <- params annotate.api.* <- overrides (CLI flags; None means 'not given')."""
        cfg = cls()
        if params is not None:
            num_levels = params.int("levels.num_levels", 10, lo=2)
            prefix = "annotate.api."
            version = params.str(prefix + "prompt_version", PROMPT_VERSION)
            if version != PROMPT_VERSION:
                raise UserError(
                    f"{params.source}: annotate.api.prompt_version: {version!r} requested but the code's "
                    f"prompts are {PROMPT_VERSION!r}"
                )
            prices = params.get(prefix + "prices", {}) or {}
            if not isinstance(prices, dict) or not all(
                isinstance(v, dict) and {"input", "output"} <= set(v) for v in prices.values()
            ):
                raise UserError(
                    f"{params.source}: annotate.api.prices: expected {{model: {{input: USD/1M, output: USD/1M}}}}"
                )
            cfg = replace(
                cfg,
                base_url=params.str(prefix + "base_url", cfg.base_url),
                model=params.str(prefix + "model", cfg.model),
                key_env=params.str(prefix + "key_env", cfg.key_env),
                num_levels=num_levels,
                concurrency=params.int(prefix + "concurrency", cfg.concurrency, lo=1),
                max_tries=params.int(prefix + "max_tries", cfg.max_tries, lo=1),
                max_invalid=params.int(prefix + "max_invalid", cfg.max_invalid, lo=0),
                timeout_s=params.num(prefix + "timeout_s", cfg.timeout_s, lo=0.01),
                max_side=params.int(prefix + "max_side", cfg.max_side, lo=28),
                max_tokens=params.int(prefix + "max_tokens", cfg.max_tokens, lo=1),
                temperature=params.num(prefix + "temperature", cfg.temperature, lo=0),
                max_cost_usd=params.num(prefix + "max_cost_usd", cfg.max_cost_usd, lo=0),
                prices={
                    **DEFAULT_PRICES,
                    **{k: {s: float(v[s]) for s in ("input", "output")} for k, v in prices.items()},
                },
                backoff_base_s=params.num(prefix + "backoff_base_s", cfg.backoff_base_s, lo=0),
                backoff_max_s=params.num(prefix + "backoff_max_s", cfg.backoff_max_s, lo=0),
                cache=params.str(prefix + "cache", cfg.cache),
            )
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        for name, lo in (
            ("concurrency", 1),
            ("max_tries", 1),
            ("timeout_s", 1e-3),
            ("max_side", 28),
            ("num_levels", 2),
        ):
            if getattr(cfg, name) < lo:
                raise UserError(f"{name}: expected >= {lo}, got {getattr(cfg, name)}")
        if cfg.max_cost_usd < 0:
            raise UserError(f"max cost: expected >= 0, got {cfg.max_cost_usd}")
        return cfg

    def api_key_env(self) -> str:
        if self.key_env:
            return self.key_env
        return "DASHSCOPE_API_KEY" if "dashscope" in self.base_url else "OPENAI_API_KEY"

    def gen_params(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "max_side": self.max_side}

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.prices.get(self.model)
        if price is None:
            return None
        return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1e6


@dataclass(frozen=True)
class Item:
    image_id: str
    path: str
    mos: float
    level: int
    prompt: str
    image_sha256: str
    key: str


def cache_key(cfg: ApiConfig, prompt: str, image_sha256: str) -> str:
    blob = {
        "model": cfg.model,
        "prompt_version": PROMPT_VERSION,
        "prompt": prompt,
        "image_sha256": image_sha256,
        "gen": cfg.gen_params(),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def load_items(manifest: str | Path, cfg: ApiConfig) -> list[Item]:
    rows = read_csv(manifest, required=("image_id", "path", "mos"))
    items, seen = [], set()
    for lineno, row in enumerate(rows, 2):
        path = Path(row["path"])
        if not path.is_file():
            raise UserError(f"{manifest}:{lineno}: image {path} not found (image_id {row['image_id']})")
        if row["image_id"] in seen:
            raise UserError(f"{manifest}:{lineno}: duplicate image_id {row['image_id']}")
        seen.add(row["image_id"])
        try:
            mos = float(row["mos"])
        except ValueError:
            raise UserError(f"{manifest}:{lineno}: mos: expected a number, got {row['mos']!r}") from None
        level = mos_to_level(mos, cfg.num_levels)
        prompt = CRITIC_INSTRUCTION.format(level=level, num_levels=cfg.num_levels)
        sha = sha256_file(path)
        items.append(Item(row["image_id"], row["path"], mos, level, prompt, sha, cache_key(cfg, prompt, sha)))
    return items


def _data_url(im: Image.Image, max_side: int) -> str:
    if max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def encode_image(path: str | Path, max_side: int) -> str:
    """The data URL sent for an image: RGB, longest side <= max_side, JPEG q90 (deterministic)."""
    with Image.open(path) as im:
        return _data_url(im.convert("RGB"), max_side)


def _exit_with_parent(ppid: int) -> None:
    """Pool initializer: a SIGKILLed annotator must not leave its measuring process behind."""

    def watch() -> None:
        while os.getppid() == ppid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def measure_props(path: str | Path) -> dict[str, float]:
    with Image.open(path) as im:
        return measure(im).as_dict()


# -- answer validation -----------------------------------------------------------------------------
# The critic is told the true level, so the one thing its analysis must not do is state that level (or the
# MOS) as a score: a model trained on such text would learn to copy a number, not to judge the photo.
# Ordinary numbers (f/1.8, 35mm, ISO 3200, 1/250 s, 1970s, 16:9, 4K, "two people", "3 windows") are fine.
_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
# A number token: 7, 7.5, 7,5; never a piece of a longer token (1970s, 35mm, 4K, ISO3200, the 1.8 of f/1.8, the
# 250 of 1/250, the 9 of 16:9).
_NUM = r"(?<![\w.,/])(?<!\d:)\d+(?:[.,]\d+)?(?!\w|[.,]\d)"
_WORD = r"\b(?:" + "|".join(_NUMBER_WORDS) + r")\b"
_WORD_NOT_ONE = r"\b(?:" + "|".join(w for w in _NUMBER_WORDS if w != "one") + r")\b"  # "a strong one" is a pronoun
_VAL = rf"(?:{_NUM}|{_WORD})"
_SEP = r"(?:\s*[:=]\s*|\s*[-–—]\s*|\s+)"
# Words that may stand between a rating word/verb and its number: "score of about 7", "rated it a solid seven".
_FILLER = (
    r"(?:of|a|an|at|around|about|roughly|approximately|approx\.?|maybe|perhaps|probably|likely|solid|strong|clear|"
    r"firm|high|low|mere|just|only|nearly|almost|easily|is|was|be|would|will|to|me|it|this|that|the|photo|image|"
    r"picture|shot|here|somewhere|between|than|above|below|over|under|overall|even|full|perfect|respectable|decent)"
)
_FILLERS = rf"(?:{_FILLER}\s+){{0,3}}"
# What may follow a number that is a verdict ("deserves an 8.", "a solid seven for its colours"), as opposed to a
# count ("gets two distinct layers", "a 1/250 s exposure", "a 16:9 frame").
_TAIL = (
    r"(?=\s*(?:$|[.,;!?)\]]|\b(?:for|overall|here|in|on|out|from|because|since|given|thanks|due|but|and|with|as|"
    r"if|or|at|though|although|which|that|really|easily|maybe|perhaps|is|would|could|i)\b))"
)
_RATING_WORDS = (
    r"\b(?:scores?|scored|scoring|ratings?|rated|rate\s+(?:it|this)|grades?|graded|grading|mos|"
    r"mean\s+opinion|marks?\s+of)\b"
)
_VERBS = (
    r"\b(?:give|gives|giving|gave|deserves?|deserving|deserved|earns?|earned|earning|merits?|merited|worth|"
    r"i['’]d\s+say|i\s+would\s+say|call\s+it|put\s+it\s+at|score\s+it)\b"
)
_ADJ = (
    r"(?:solid|strong|clear|easy|decent|fair|respectable|high|low|mere|generous|firm|comfortable|good|weak|"
    r"borderline|honest|very|rather|pretty|middling|modest|safe|deserved|well[- ]deserved|perfect|full)"
)
_LABELS = r"\b(?:overall|verdict|final|total|result|assessment|aesthetics?|quality|conclusion|summary)\b"


_STRIP = " \t\n.!?;:-–—"  # trimmed off the quoted match in a rejection reason


@functools.lru_cache(maxsize=16)
def _leak_patterns(num_levels: int) -> tuple[tuple[str, re.Pattern[str]], ...]:
    dens = sorted({"10", "100", str(num_levels)}, key=len, reverse=True)
    den_words = ["ten", "hundred"] + ([_NUMBER_WORDS[num_levels]] if num_levels < len(_NUMBER_WORDS) else [])
    # "N/10", "N / 10", "N out of 10", "seven out of ten" (not a shutter speed: "1/10 s", "1/100 sec").
    den = rf"(?:(?:{'|'.join(dens)})(?!\w|[.,]\d)(?!\s*(?:s|secs?|seconds?)\b)|\b(?:{'|'.join(den_words)})\b)"
    rules = [
        ("N out of M form", rf"{_VAL}\s*(?:/|\bout\s+of\b)\s*{den}"),
        ("number after a rating word", rf"{_RATING_WORDS}{_SEP}{_FILLERS}{_VAL}"),
        ("level number", rf"\blevels?{_SEP}(?:of\s+)?{_VAL}"),
        ("points", rf"(?:{_NUM}|{_WORD_NOT_ONE})\s*(?:points?|pts)\b(?!\s+of\b)"),
        ("number as a verdict", rf"{_VERBS}{_SEP}{_FILLERS}{_VAL}{_TAIL}"),
        ("number as a verdict", rf"\b(?:a|an)\s+(?:{_ADJ}\s+){{0,2}}(?:{_NUM}|{_WORD_NOT_ONE}){_TAIL}"),
        ("number as a verdict", rf"{_LABELS}\s*(?:[:=]|[-–—])\s*{_VAL}{_TAIL}"),
        ("bare number", rf"(?:^|\n)[ \t]*{_VAL}[ \t]*[.!]?[ \t]*(?:\n|$)"),  # a line that is only a number
        (
            "bare number",  # the analysis ends on a sentence that is only a number: "… soft. 7"
            rf"(?:^|[.!?;:\n]|\s[-–—])\s*(?:(?:so|thus|hence|therefore|overall|verdict)\W+)?{_VAL}\s*[.!]?\s*$",
        ),
    ]
    return tuple((kind, re.compile(rx, re.IGNORECASE)) for kind, rx in rules)


def score_leak(analysis: str, num_levels: int = 10) -> str | None:
    """Why the analysis states a score (the level or the MOS as a number), or None when its numbers are ordinary."""
    text = analysis.strip()
    if text.lower().startswith("analysis:"):
        text = text[len("analysis:") :].lstrip()
    for kind, rx in _leak_patterns(num_levels):
        m = rx.search(text)
        if m:
            return f"analysis states a score-like number ({kind}: {m.group(0).strip(_STRIP)!r})"
    return None


def validate_answer(text: str, level: int, num_levels: int) -> tuple[str | None, str]:
    """(normalised critique, "") for a valid answer, else (None, reason)."""
    text = (text or "").strip()
    parsed = parse_rating_level(text, num_levels)
    tail = _TAIL_RE.search(text)
    if parsed is None or tail is None or int(tail.group(1)) != parsed:
        return None, f"answer does not end with '{RATING_PREFIX} N' (1..{num_levels})"
    if parsed != level:
        return None, f"answer gives level {parsed}, requested {level}"
    analysis = text[: tail.start()].strip()
    if RATING_PREFIX in analysis:
        return None, f"answer has more than one '{RATING_PREFIX}'"
    if leak := score_leak(analysis, num_levels):
        return None, leak
    if not analysis:
        return None, "empty analysis"
    # Same shape as the offline critic's critiques: 'Analysis: … Rating Level: N'.
    if not analysis.lower().startswith("analysis:"):
        analysis = "Analysis: " + analysis
    return f"{analysis} {RATING_PREFIX} {level}", ""


# -- append-only JSONL log ------------------------------------------------------------------------
def load_log(path: Path, repair: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Complete records of an append-only JSONL file and how many bad lines were skipped. A torn trailing
    line (a kill mid-write) is ignored and, with repair, truncated so later appends start on a fresh line."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with path.open("r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    rows, bad = [], int(end < len(data))
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, bad


class AppendLog:
    """One complete JSON line per os.write on an O_APPEND fd, fsynced before the next answer is trusted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        while data:  # a regular file takes it all at once; the loop only guards partial writes
            data = data[os.write(self.fd, data) :]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


# -- concurrency ----------------------------------------------------------------------------------
class AdaptiveLimiter:
    """AIMD concurrency: halve on a burst of 429s (at most once per window), +1 per `limit` successes."""

    def __init__(self, max_limit: int, burst: int = 3, window_s: float = 1.0) -> None:
        self.max_limit, self.limit, self.min_seen = max_limit, float(max_limit), max_limit
        self.in_flight, self.burst, self.window_s = 0, burst, window_s
        self._cond = asyncio.Condition()
        self._recent: deque[float] = deque()
        self._last_cut = -math.inf

    async def __aenter__(self) -> AdaptiveLimiter:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < max(1, int(self.limit)))
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def on_success(self) -> None:
        self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
        if len(self._recent) >= min(self.burst, self.max_limit) and now - self._last_cut > self.window_s:
            self.limit = max(1.0, self.limit / 2)
            self.min_seen = min(self.min_seen, int(self.limit))
            self._last_cut = now
            self._recent.clear()


def retry_after_s(exc: Exception) -> float | None:
    """Seconds a 429/503 asks us to wait (retry-after-ms, Retry-After seconds or HTTP date), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (value := headers.get("retry-after")) is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
    return None


class Scrubber:
    """Removes secrets from any text that may reach a log, a file or an exception."""

    def __init__(self, *secrets: str | None) -> None:
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def __call__(self, text: object) -> str:
        out = str(text)
        for s in self.secrets:
            out = out.replace(s, "***")
        return out


# -- the run --------------------------------------------------------------------------------------
@dataclass
class Stats:
    requests: int = 0
    done: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: Counter = field(default_factory=Counter)


class _Fatal(Exception):
    pass


class Annotator:
    def __init__(self, cfg: ApiConfig, api_key: str, log: AppendLog, emit: Callable[[str], None]) -> None:
        import openai

        self.cfg, self.log_file, self.openai = cfg, log, openai
        self.scrub = Scrubber(api_key)
        self.emit = lambda msg: emit(self.scrub(msg))
        # Our retry loop is the only one: the client's own retries would double-spend and hide 429s.
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s)
        self.limiter = AdaptiveLimiter(cfg.concurrency)
        # spawn, not fork: forking a process that runs threads (the event loop's executor) is unsafe.
        workers = max(1, min(4, (os.cpu_count() or 2) - 1))
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        self.stats = Stats()
        self.reasons: dict[str, str] = {}  # cache key -> latest failure reason
        self.records: dict[str, dict[str, Any]] = {}  # cache key -> new answer
        self.stop_reason = ""
        self.fatal = ""

    def _stop(self, reason: str, quiet: bool = False) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
            if not quiet:
                self.emit(f"annotate: stopping ({reason}); in-flight requests finish")

    async def _request(self, item: Item, data_url: str) -> Any:
        return await self.client.chat.completions.create(
            model=self.cfg.model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": item.prompt},
                    ],
                }
            ],
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
        )

    def _backoff(self, tries: int, hint: float | None) -> float:
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (tries - 1)) * random.uniform(0.5, 1.0)
        if hint is not None:  # the server's word wins, plus a little jitter so waiters don't return in lockstep
            delay = min(hint, self.cfg.retry_after_max_s) + random.uniform(0, 0.1 * max(hint, 0.1))
        return delay

    def _account(self, usage: Any) -> dict[str, int]:
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        cost = self.cfg.cost(pt, ct)
        if cost is not None:
            self.stats.cost_usd += cost
            if self.cfg.max_cost_usd and self.stats.cost_usd >= self.cfg.max_cost_usd:
                self._stop(f"max cost ${self.cfg.max_cost_usd:g} reached")
        return {"prompt_tokens": pt, "completion_tokens": ct}

    async def _attempt(self, item: Item, data_url: str) -> tuple[str, Any]:
        """One request: ('ok', response) | ('retry', (kind, wait hint)) | ('fail', reason)."""
        oa = self.openai
        async with self.limiter:
            if self.stop_reason:
                return "stopped", None
            self.stats.requests += 1
            try:
                resp = await self._request(item, data_url)
            except oa.RateLimitError as exc:
                self.limiter.on_rate_limited()
                return "retry", ("429", retry_after_s(exc))
            except oa.APITimeoutError:
                return "retry", ("timeout", None)
            except oa.APIConnectionError:
                return "retry", ("connection", None)
            except oa.APIStatusError as exc:
                msg = f"HTTP {exc.status_code}: {self.scrub(exc.message)}"
                if exc.status_code >= 500:
                    return "retry", ("5xx", retry_after_s(exc))
                if exc.status_code in FATAL_STATUS:
                    what = "authentication failed" if exc.status_code == 401 else "request refused"
                    raise _Fatal(f"{self.cfg.base_url}: {what} ({msg}); check ${self.cfg.api_key_env()}") from None
                return "fail", msg
            self.limiter.on_success()
            return "ok", resp

    async def process(self, item: Item) -> None:
        cfg = self.cfg
        try:
            data_url = await asyncio.to_thread(encode_image, item.path, cfg.max_side)
        except OSError as exc:
            self.reasons[item.key] = f"cannot read image: {self.scrub(exc)}"
            return
        # The critic's properties are only needed for the record: measure them while the request is in flight,
        # in another process (numpy work in a thread would hold the GIL and delay the event loop's sockets).
        loop = asyncio.get_running_loop()
        props_task = asyncio.ensure_future(loop.run_in_executor(self.pool, measure_props, item.path))
        try:
            await self._ask(item, data_url, props_task)
        finally:
            if not props_task.done():
                props_task.cancel()
            await asyncio.gather(props_task, return_exceptions=True)

    async def _ask(self, item: Item, data_url: str, props_task: asyncio.Future) -> None:
        cfg, tries, invalid, last = self.cfg, 0, 0, ""
        while True:
            if self.stop_reason:
                self.reasons[item.key] = f"not requested: {self.stop_reason}" + (f" (after {last})" if last else "")
                return
            if tries >= cfg.max_tries:
                self.reasons[item.key] = f"gave up after {tries} tries; last: {last}"
                return
            tries += 1
            outcome, value = await self._attempt(item, data_url)
            if outcome == "stopped":
                continue
            if outcome == "fail":
                self.reasons[item.key] = f"refused after {tries} tries: {value}"
                return
            if outcome == "retry":
                kind, hint = value
                self.stats.retries[kind] += 1
                last = {"429": "HTTP 429 rate limited", "5xx": "server error", "timeout": "timeout"}.get(
                    kind, "connection error"
                )
                await asyncio.sleep(self._backoff(tries, hint))
                continue
            usage = self._account(value.usage)
            text = value.choices[0].message.content if value.choices else ""
            critique, why = validate_answer(text or "", item.level, cfg.num_levels)
            if critique is None:
                invalid += 1
                self.stats.retries["invalid"] += 1
                last = f"invalid answer: {why}"
                if invalid > cfg.max_invalid:
                    self.reasons[item.key] = f"invalid answer {invalid} times; last: {why}"
                    return
                continue
            record = make_record(item, critique, await props_task, cfg, usage)
            # Durable before it counts as done; fsync in a thread so the event loop keeps serving requests
            # (O_APPEND single writes do not interleave).
            await asyncio.to_thread(self.log_file.append, record)
            self.records[item.key] = record
            self.reasons.pop(item.key, None)
            self.stats.done += 1
            return

    async def run(self, items: list[Item]) -> None:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        for it in items:
            queue.put_nowait(it)

        async def worker() -> None:
            while not queue.empty() and not self.stop_reason:
                await self.process(queue.get_nowait())

        async def progress() -> None:
            while True:
                await asyncio.sleep(self.cfg.progress_s)
                s = self.stats
                self.emit(
                    f"annotate: {s.done}/{len(items)} answered, {len(self.reasons)} failing, {s.requests} requests, "
                    f"concurrency {int(self.limiter.limit)}"
                )

        ticker = asyncio.create_task(progress())
        workers = [asyncio.create_task(worker()) for _ in range(min(self.cfg.concurrency, len(items)))]
        try:
            for fut in asyncio.as_completed(workers):
                try:
                    await fut
                except _Fatal as exc:
                    self.fatal = self.fatal or self.scrub(exc)
                    self._stop(self.fatal, quiet=True)  # the caller raises it: one line, no progress noise
        finally:
            ticker.cancel()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, ticker, return_exceptions=True)
            await self.client.close()
            self.pool.shutdown(cancel_futures=True)
        for it in items:  # never reached a worker (stopped early)
            if it.key not in self.records and it.key not in self.reasons:
                self.reasons[it.key] = f"not requested: {self.stop_reason or 'stopped'}"


def make_record(item: Item, critique: str, props: dict[str, float], cfg: ApiConfig, usage: dict) -> dict[str, Any]:
    return {
        "image_id": item.image_id,
        "path": item.path,
        "mos": item.mos,
        "level": item.level,
        "critique": critique,
        "properties": props,  # the DPO stage writes its rejected critiques from these
        "backend": "api",
        "prompt_version": PROMPT_VERSION,
        "model": cfg.model,
        "usage": usage,
        "image_sha256": item.image_sha256,
        "cache_key": item.key,
    }


def load_cache(path: Path, cfg: ApiConfig, repair: bool) -> tuple[dict[str, dict[str, Any]], int]:
    """cache key -> record, keeping only records that still pass validation."""
    rows, bad = load_log(path, repair=repair)
    cache = {}
    for r in rows:
        key, critique, level = r.get("cache_key"), r.get("critique"), r.get("level")
        typed = isinstance(key, str) and isinstance(critique, str) and isinstance(level, int)
        if typed and validate_answer(critique, level, cfg.num_levels)[0] is not None:
            cache[key] = r
    return cache, bad


# -- dry run ---------------------------------------------------------------------------------------
def estimate_tokens(item: Item, cfg: ApiConfig) -> tuple[int, int]:
    """(prompt, completion) tokens an item is expected to cost; an estimate, not a count."""
    with Image.open(item.path) as im:
        w, h = im.size
    scale = min(1.0, cfg.max_side / max(w, h))
    w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if "qwen" in cfg.model.lower():  # Qwen-VL: one token per 28x28 patch (after the 2x2 merge) + 2 markers
        image_tokens = math.ceil(w / 28) * math.ceil(h / 28) + 2
    else:  # OpenAI high detail: 85 + 170 per 512 px tile
        image_tokens = 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
    return image_tokens + len(item.prompt) // 4 + 10, cfg.max_tokens


# -- entry points ----------------------------------------------------------------------------------
def failures_path(out: Path) -> Path:
    return out.with_name(out.name + ".failures.jsonl")


def annotate_api(
    items: list[Item],
    out: str | Path,
    cfg: ApiConfig,
    dry_run: bool = False,
    emit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Annotate items into `out` (JSONL); returns the summary. See the module docstring."""
    emit = emit or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    log_path = Path(cfg.cache) if cfg.cache else out
    cache, bad = load_cache(log_path, cfg, repair=not dry_run)
    if bad:
        emit(f"annotate: {log_path}: skipped {bad} incomplete/invalid line(s)")
    todo = list({it.key: it for it in items if it.key not in cache}.values())  # one request per content key
    summary: dict[str, Any] = {"total": len(items), "cached": sum(it.key in cache for it in items)}
    if dry_run:
        pt = ct = 0
        for it in todo:
            p, c = estimate_tokens(it, cfg)
            pt, ct = pt + p, ct + c
        cost = cfg.cost(pt, ct)
        summary.update(
            to_request=len(todo),
            est_prompt_tokens=pt,
            est_completion_tokens_max=ct,
            est_cost_usd_max=None if cost is None else round(cost, 4),
            note="estimate only (image tokens from size, text ~4 chars/token, output at max_tokens); no request sent",
        )
        return summary

    if cfg.max_cost_usd and cfg.model not in cfg.prices:
        raise UserError(f"max cost set but no price for model {cfg.model!r} (add it to annotate.api.prices)")
    api_key = os.environ.get(cfg.api_key_env(), "")
    if todo and not api_key:
        raise UserError(f"${cfg.api_key_env()} is not set (the API key is read from the environment only)")
    t0 = time.perf_counter()
    annotator: Annotator | None = None
    reasons: dict[str, str] = {}
    if todo and cfg.max_cost_usd < 0:
        reasons = dict.fromkeys((it.key for it in todo), "not requested: max cost reached")
    elif todo:
        log = AppendLog(log_path)
        try:
            annotator = Annotator(cfg, api_key, log, emit)
            asyncio.run(annotator.run(todo))
        finally:
            log.close()
        cache.update(annotator.records)

    # Final output: manifest order, one record per image, written atomically (compacts the log too).
    records = [
        {**cache[it.key], "image_id": it.image_id, "path": it.path, "mos": it.mos} for it in items if it.key in cache
    ]
    write_jsonl(out, records)
    if annotator:
        reasons = annotator.reasons
    failed = [
        {"image_id": it.image_id, "path": it.path, "reason": reasons.get(it.key, "no answer")}
        for it in items
        if it.key not in cache
    ]
    write_jsonl(failures_path(out), failed)
    stats = annotator.stats if annotator else Stats()
    cost = stats.cost_usd if cfg.model in cfg.prices else None
    summary.update(
        done=stats.done,
        failed=len(failed),
        annotated=len(records),
        requests=stats.requests,
        retries=dict(stats.retries),
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        cost_usd=None if cost is None else round(cost, 6),
        stopped=annotator.stop_reason if annotator else "",
        min_concurrency=annotator.limiter.min_seen if annotator else cfg.concurrency,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
    if annotator and annotator.fatal:
        raise UserError(annotator.fatal)
    return summary


def format_summary(s: dict[str, Any], model: str) -> str:
    if "to_request" in s:
        cost = "unknown (no price for this model)" if s["est_cost_usd_max"] is None else f"<= ${s['est_cost_usd_max']}"
        return (
            f"dry run: {s['total']} images, {s['cached']} cached, {s['to_request']} to request; ESTIMATE "
            f"~{s['est_prompt_tokens']} prompt + <= {s['est_completion_tokens_max']} completion tokens, cost {cost} "
            f"({model})"
        )
    cost = "unknown (no price for this model)" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"
    line = (
        f"annotate: {s['done']} done, {s['cached']} cached, {s['failed']} failed of {s['total']}; "
        f"{s['requests']} requests, {s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens, "
        f"cost {cost} ({model})"
    )
    return line + (f"; stopped: {s['stopped']}" if s["stopped"] else "")


def annotate_params(params: Params, manifests: dict[str, Path], out_dir: Path) -> tuple[dict[str, int], dict]:
    """The DVC stage with backend api: `<out_dir>/<split>.jsonl` per split, answers cached outside the out."""
    cfg = ApiConfig.from_params(params)
    # DVC deletes a stage's outs before running it, so the content cache must live elsewhere.
    cfg = replace(cfg, cache=cfg.cache or "data/cache/annotate_api.jsonl")
    max_failed = params.num("annotate.api.max_failed_fraction", 0.0, lo=0, hi=1)
    counts, summaries, spent = {}, {}, 0.0
    for split, manifest in manifests.items():
        # What earlier splits left of the budget; -1 = spent (nothing is requested).
        budget = (max(cfg.max_cost_usd - spent, 0.0) or -1.0) if cfg.max_cost_usd else 0.0
        s = annotate_api(load_items(manifest, cfg), out_dir / f"{split}.jsonl", replace(cfg, max_cost_usd=budget))
        print(format_summary(s, cfg.model), file=sys.stderr)
        spent += s["cost_usd"] or 0.0
        counts[split], summaries[split] = s["annotated"], s
        if s["total"] and s["failed"] / s["total"] > max_failed:
            raise UserError(
                f"annotate: {split}: {s['failed']} of {s['total']} images failed "
                f"(see {failures_path(out_dir / f'{split}.jsonl')}; annotate.api.max_failed_fraction={max_failed:g}); "
                "rerun to retry them, cached answers are not requested again"
            )
    return counts, summaries
