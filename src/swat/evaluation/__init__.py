"""Evaluation of saved models: perplexity against context length, passkey retrieval, attention
diagnostics and lm-evaluation-harness (:mod:`swat.evaluation.harness`, needs ``lm-eval``). Every
tool writes JSON, Markdown and a PNG. The paper's experiments built on them are in
:mod:`swat.experiments`."""

from swat.evaluation.attention import diagnose_attention
from swat.evaluation.heldout import read_tokens, token_pieces
from swat.evaluation.length import evaluate_lengths, parse_lengths
from swat.evaluation.passkey import evaluate_passkey
from swat.evaluation.perplexity import stream_loss

__all__ = ["diagnose_attention", "evaluate_lengths", "evaluate_passkey", "parse_lengths", "read_tokens", "stream_loss",
           "token_pieces"]
