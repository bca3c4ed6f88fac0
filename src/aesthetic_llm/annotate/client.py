"""The concurrent API client: adaptive concurrency, retries with backoff, key scrubbing and the per-image loop."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from aesthetic_llm.annotate.api_config import ApiConfig, Item
from aesthetic_llm.annotate.images import _exit_with_parent, encode_image, measure_props
from aesthetic_llm.annotate.journal import AppendLog, make_record
from aesthetic_llm.annotate.validate import validate_answer

FATAL_STATUS = (401, 403, 404)  # wrong key / no access / unknown model: no image can succeed


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
