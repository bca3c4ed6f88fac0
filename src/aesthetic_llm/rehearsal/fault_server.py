"""A fault-injecting OpenAI-compatible server (POST /v1/chat/completions) on 127.0.0.1, for tests, benchmarks
and the paper rehearsal (`make rehearse`, where it stands in for the API critic).

Faults are drawn per request from a generator seeded by (seed, image, attempt number at the server), so an
image's sequence of faults is the same whatever the client's concurrency or ordering. A valid answer is written
for the level found in the prompt ("... level N ...") and echoes usage token counts; its analysis is drawn from
`analyses` (digit-free by default; NUMBERS_ANALYSES quote camera settings, counts and years, as real critics do).
With `critic_style`, the analysis is the offline critic's description of the image it was sent (measured
exposure, contrast, sharpness, noise, colour), one sentence with ordinary numbers and the verdict for the level.

    with FaultServer(p_429=0.15, p_500=0.1) as srv:     # background thread, random free port
        client(base_url=srv.url, api_key=srv.api_key)
        srv.counts                                       # requests received per image (sha256 of its data URL)

    python -m aesthetic_llm.rehearsal.fault_server --latency 0.2   # standalone; prints its base URL, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import io
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image

from aesthetic_llm.critic import describe_properties, verdict
from aesthetic_llm.measure import measure

_LEVEL_RE = re.compile(r"\blevel (\d+)\b")
_SCALE_RE = re.compile(r"\bscale of 1 to (\d+)\b")
VALID_ANALYSIS = (
    "Analysis: The exposure is even across the frame, edges are reasonably crisp, noise is modest and the "
    "colours are natural, while the composition keeps the subject clear."
)
# Critiques with ordinary numbers (camera settings, counts, years): valid, the validator must keep them.
NUMBERS_ANALYSES = (
    "Analysis: Shot at f/1.8 with two people in frame, 3 windows behind them and a 1970s palette with a 35mm "
    "look; the focus is soft.",
    "Analysis: At ISO 3200 and 1/250 s the 4K frame keeps 12 lanterns sharp; the 16:9 crop follows the rule of thirds.",
    "Analysis: An 85mm lens at f/2 isolates one face among 5 figures, and the colours recall a 1990s print.",
)
# critic_style: one of these in every analysis, as a critic who reads the EXIF and counts things writes.
CRITIC_NUMBER_SENTENCES = (
    "It reads like a 35mm frame at f/2.8 and 1/250 s, with 2 main shapes against the background.",
    "The 4:3 crop keeps 3 distinct planes, and the palette recalls a 1970s print.",
    "Shot at ISO 800 on an 85mm lens, the frame holds two clear areas of interest.",
    "The 16:9 framing and the f/8 depth of field keep all 4 corners readable.",
)
MALFORMED_KINDS = ("wrong_level", "score_leak", "missing_level")


@dataclass
class FaultConfig:
    p_429: float = 0.0
    p_500: float = 0.0
    p_slow: float = 0.0  # answer only after slow_s (past the client's timeout)
    p_malformed: float = 0.0  # a 200 answer that fails validation (one of MALFORMED_KINDS)
    p_drop: float = 0.0  # close the connection without a response
    retry_after: str = "0.05"  # Retry-After header sent with 429s (seconds)
    slow_s: float = 2.0
    latency_s: float = 0.0  # fixed latency of every answer (benchmark mode)
    seed: int = 0
    api_key: str | None = "test-key"  # None accepts any key; a mismatch -> 401
    analyses: tuple[str, ...] = (VALID_ANALYSIS,)  # a valid answer's analysis, drawn per request
    critic_style: bool = False  # describe the image sent (critic.py's sentences) + a numbers sentence + verdict


def critic_analysis(data_url: str, level: int, num_levels: int, rng: random.Random) -> str:
    """The offline critic's analysis of the image in `data_url` for `level`, with one sentence of ordinary numbers."""
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            described = describe_properties(measure(im))
    except (IndexError, binascii.Error, OSError, ValueError):
        described = VALID_ANALYSIS.removeprefix("Analysis: ")
    return f"Analysis: {described} {rng.choice(CRITIC_NUMBER_SENTENCES)} {verdict(level, num_levels)}"


def image_key(data_url: str) -> str:
    """How the server names an image: sha256 of the image_url it was sent (first 16 hex digits)."""
    return hashlib.sha256(data_url.encode()).hexdigest()[:16]


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": kind}}
    return web.json_response(body, status=status, headers=headers)


def _parse(body: dict[str, Any]) -> tuple[str, str]:
    """(prompt text, image data URL) from the last user message."""
    text, url = "", ""
    for msg in body.get("messages", []):
        content = msg.get("content")
        if isinstance(content, str):
            text += content
            continue
        for part in content or []:
            if part.get("type") == "text":
                text += part.get("text", "")
            elif part.get("type") == "image_url":
                url = part.get("image_url", {}).get("url", "")
    return text, url


class FaultServer:
    def __init__(self, cfg: FaultConfig | None = None, **overrides: Any) -> None:
        self.cfg = cfg or FaultConfig(**overrides)
        self.counts: Counter[str] = Counter()  # image key -> requests received
        self.faults: Counter[str] = Counter()  # fault kind -> times injected
        self.total = 0
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def api_key(self) -> str:
        return self.cfg.api_key or "any-key"

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    # -- request handling ----------------------------------------------------------------------
    def _draw(self, key: str) -> tuple[str | None, random.Random]:
        with self._lock:
            attempt = self.counts[key]
            self.counts[key] += 1
            self.total += 1
        rng = random.Random(f"{self.cfg.seed}:{key}:{attempt}")
        u, c = rng.random(), self.cfg
        for kind, p in (("429", c.p_429), ("500", c.p_500), ("slow", c.p_slow), ("malformed", c.p_malformed)):
            if u < p:
                return kind, rng
            u -= p
        return ("drop" if u < c.p_drop else None), rng

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.cfg.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.cfg.api_key}":
            got = request.headers.get("Authorization", "").removeprefix("Bearer ")
            # Echo the whole key back, as careless servers do, so the client's scrubbing is exercised.
            return _error(401, f"Incorrect API key provided: {got}", "invalid_api_key")
        body = await request.json()
        text, url = _parse(body)
        match = _LEVEL_RE.search(text)
        if not match or not url:
            return _error(400, "expected an image_url part and a prompt naming 'level N'", "invalid_request_error")
        level = int(match.group(1))
        fault, rng = self._draw(image_key(url))
        if fault:
            with self._lock:
                self.faults[fault] += 1
        if self.cfg.latency_s:
            await asyncio.sleep(self.cfg.latency_s)
        if fault == "429":
            return _error(429, "Rate limit reached", "rate_limit_exceeded", {"Retry-After": self.cfg.retry_after})
        if fault == "500":
            return _error(500, "The server had an error", "server_error")
        if fault == "slow":
            await asyncio.sleep(self.cfg.slow_s)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # the client sees a connection reset / server disconnect
            raise asyncio.CancelledError
        analyses = self.cfg.analyses
        if self.cfg.critic_style:
            scale = _SCALE_RE.search(text)
            analysis = critic_analysis(url, level, int(scale.group(1)) if scale else 10, rng)
        else:
            analysis = analyses[0] if len(analyses) == 1 else rng.choice(analyses)  # one: the draws stay as they were
        answer = f"{analysis} Rating Level: {level}"
        if fault == "malformed":
            kind = rng.choice(MALFORMED_KINDS)
            if kind == "wrong_level":
                answer = f"{analysis} Rating Level: {level % 10 + 1}"
            elif kind == "score_leak":  # the score stated in the analysis
                answer = f"Analysis: I would give it 7 out of 10 for its colours. Rating Level: {level}"
            else:
                answer = analysis
        usage = {"prompt_tokens": len(text) // 4 + len(url) // 1000 + 1, "completion_tokens": len(answer) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return web.json_response(
            {
                "id": f"chatcmpl-{rng.getrandbits(48):012x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _serve(self, sock: socket.socket) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def start(self) -> FaultServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve(sock))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="openai-fault-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.0, help="fixed latency of every answer (s)")
    ap.add_argument("--api-key", default="test-key")
    for name in ("p_429", "p_500", "p_slow", "p_malformed", "p_drop"):
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--numbers", action="store_true", help="answers with ordinary numbers (f/1.8, ISO 3200, …)")
    ap.add_argument("--critic-style", action="store_true", help="describe each image as the offline critic does")
    args = ap.parse_args()
    cfg = FaultConfig(
        latency_s=args.latency,
        api_key=args.api_key,
        seed=args.seed,
        analyses=NUMBERS_ANALYSES if args.numbers else (VALID_ANALYSIS,),
        critic_style=args.critic_style,
        **{k: getattr(args, k) for k in ("p_429", "p_500", "p_slow", "p_malformed", "p_drop")},
    )
    srv = FaultServer(cfg).start()
    print(json.dumps({"url": srv.url, "api_key": srv.api_key}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
