"""Evaluation: perplexity against context length, passkey retrieval, attention diagnostics,
lm-evaluation-harness (:mod:`swat.evaluation.harness`, needs ``lm-eval``) and the paper's
reproduction (:mod:`swat.evaluation.reproduce`). Every tool writes JSON, Markdown and a PNG."""

from swat.evaluation.attention import diagnose_attention
from swat.evaluation.length import evaluate_lengths, parse_lengths
from swat.evaluation.loading import load_model, read_tokens
from swat.evaluation.passkey import evaluate_passkey

__all__ = ["diagnose_attention", "evaluate_lengths", "evaluate_passkey", "load_model", "parse_lengths", "read_tokens"]
