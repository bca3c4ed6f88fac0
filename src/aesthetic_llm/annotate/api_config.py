"""The run's settings (ApiConfig, from params and CLI flags), the manifest's items and their content cache keys."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aesthetic_llm.data.manifest import read_manifest
from aesthetic_llm.errors import UserError
from aesthetic_llm.io_utils import sha256_file
from aesthetic_llm.levels import mos_to_level
from aesthetic_llm.params import Params
from aesthetic_llm.prompts import CRITIC_INSTRUCTION, PROMPT_VERSION

# USD per 1M tokens (input, output): approximate list prices, override with params annotate.api.prices.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "qwen-vl-plus": {"input": 0.21, "output": 0.63},
    "qwen-vl-max": {"input": 0.80, "output": 3.20},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
}
DASHSCOPE_URL = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"


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
    items = []
    for row in read_manifest(manifest):
        if not Path(row.path).is_file():
            raise UserError(f"{row.where()}: image {row.path} not found (image_id {row.image_id})")
        level = mos_to_level(row.mos, cfg.num_levels)
        prompt = CRITIC_INSTRUCTION.format(level=level, num_levels=cfg.num_levels)
        sha = sha256_file(row.path)
        items.append(Item(row.image_id, row.path, row.mos, level, prompt, sha, cache_key(cfg, prompt, sha)))
    return items
