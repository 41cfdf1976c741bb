"""Tokenizers: train a byte-level BPE locally with ``tokenizers``, or load any Hugging Face one.

Every tokenizer used for training must have an end-of-sequence token: it separates the documents
of the packed token stream (see ``swat.data.shards``). Trained tokenizers use ``<|endoftext|>``
as EOS and as padding, like GPT-2.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from swat.errors import UserError
from swat.models.hub import refuse_custom_code
from swat.utils.text import read_text

EOS_TOKEN = "<|endoftext|>"


def _text_batches(texts_or_files: Iterable[str | os.PathLike], batch_chars: int = 1 << 20):
    """Yield lists of strings of about ``batch_chars`` characters: ``str`` items are texts,
    ``os.PathLike`` items are UTF-8 files read whole."""
    batch, size = [], 0
    for item in texts_or_files:
        text = read_text(item) if isinstance(item, os.PathLike) else item
        if not isinstance(text, str):
            raise TypeError(f"expected texts (str) or files (pathlib.Path), got {type(item).__name__}")
        batch.append(text)
        size += len(text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def train_bpe_tokenizer(texts_or_files: Iterable[str | os.PathLike], vocab_size: int,
                        out_dir: str | os.PathLike | None = None, *, min_frequency: int = 2,
                        show_progress: bool = True) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (GPT-2 style: any byte sequence is encodable, no unknown
    token) with ``vocab_size`` entries at most, ``<|endoftext|>`` included as EOS and pad.

    ``texts_or_files`` holds texts (``str``) and/or text files (``pathlib.Path``; a plain string
    is always a text, never a file name). With ``out_dir`` the tokenizer is saved there with
    ``save_pretrained``, so ``AutoTokenizer.from_pretrained(out_dir)`` loads it.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise UserError(f"vocab_size {vocab_size} is too small for byte-level BPE: it needs at least "
                         f"{len(alphabet) + 1} (256 bytes + {EOS_TOKEN}); use e.g. 4096 or more")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[EOS_TOKEN], initial_alphabet=alphabet,
                                  show_progress=show_progress)
    tokenizer.train_from_iterator(_text_batches(texts_or_files), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)
    if out_dir is not None:
        wrapped.save_pretrained(out_dir)
    return wrapped


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)`` (a local directory,
    or a hub name when online), checked to have the EOS token that separates documents. A
    directory whose tokenizer needs its own code (``auto_map``) is refused: swat never runs code
    from a directory, and never asks on standard input whether to."""
    refuse_custom_code(name_or_path, "AutoTokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    except (OSError, ValueError) as e:
        if "trust_remote_code" in str(e):
            raise UserError(f"the tokenizer {str(name_or_path)!r} needs custom code, which swat never runs: use a "
                            "tokenizer that transformers loads without it (tokenizer.json)") from None
        raise OSError(
            f"could not load the tokenizer {str(name_or_path)!r}: give a local directory saved with "
            f"save_pretrained (e.g. a prepared data directory's 'tokenizer' folder or a model directory), "
            f"or a Hugging Face hub name while online; or train one locally with --vocab-size N. ({e})"
        ) from e
    if tokenizer.eos_token_id is None:
        raise UserError(
            f"the tokenizer {str(name_or_path)!r} has no eos_token; documents are separated by EOS, so "
            f"pick a tokenizer with one (or set tokenizer.eos_token and save it again)"
        )
    return tokenizer


def encode_documents(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of each text without added special tokens; special-token strings inside the text
    (e.g. a literal ``<|endoftext|>``) are encoded as plain text, so EOS only ever separates
    documents."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what decides the ids a tokenizer gives a text: its normaliser, pre-tokeniser and
    model (the vocabulary and, for BPE, the merges), its added tokens, as ``tokenizer.json``
    serialises them (the vocabulary alone for tokenizers without that serialisation), and the
    end-of-sequence token that separates documents."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        content: Any = sorted(tokenizer.get_vocab().items())
    else:
        spec = json.loads(backend.to_str())
        content = {key: spec.get(key) for key in ("normalizer", "pre_tokenizer", "model")}
        content["added_tokens"] = [(t["id"], t["content"]) for t in spec.get("added_tokens") or []]
    return hashlib.sha256(json.dumps([content, tokenizer.eos_token], sort_keys=True).encode()).hexdigest()
