"""Aesthetic scoring with multimodal LLMs: CoT critiques, LLaMA-Factory SFT/DPO, level-probability scoring."""

__version__ = "0.1.0"
