"""The held-out token streams evaluations read: a UTF-8 text file tokenised piece by piece with
the model's tokenizer, or a prepared data directory checked to have been tokenised with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from swat.data.shards import TokenShards, read_manifest
from swat.data.tokenizer import load_tokenizer, tokenizer_fingerprint
from swat.errors import UserError
from swat.utils.text import text_blocks

__all__ = ["read_tokens", "sequences_of", "token_pieces"]


TEXT_PIECE_CHARS = 1 << 18  # characters of text tokenised at a time (about 50k tokens of English)
CUT_CONTEXT = 64  # characters on each side of a cut that are tokenised together to check it
MAX_FAILED_CUTS = 32  # a tokenizer whose ids change at this many cuts in a row gets the rest of the text whole


def read_tokens(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, split: str = "heldout", max_tokens: int | None = None
) -> torch.Tensor:
    """The token stream of held-out text as one tensor, at most ``max_tokens`` tokens (reading stops
    there): see :func:`token_pieces`."""
    pieces, total = [], 0
    for piece in token_pieces(source, tokenizer, split):
        pieces.append(piece)
        total += len(piece)
        if max_tokens is not None and total >= max_tokens:
            break
    return torch.cat(pieces)[:max_tokens] if pieces else torch.zeros(0, dtype=torch.long)


def token_pieces(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, split: str = "heldout", piece_chars: int | None = None
) -> Iterator[torch.Tensor]:
    """The token stream of held-out text, piece by piece, so that memory does not grow with its
    length: a UTF-8 text file is tokenised with the model's tokenizer (no special tokens added)
    about ``piece_chars`` (default ``TEXT_PIECE_CHARS``) characters at a time, cut only where the
    ids on both sides are those of the whole text; a prepared data directory (``swat data ...``) is
    read as is, its ``split`` a chunk at a time, once it is checked to have been tokenised with the
    model's tokenizer."""
    source = Path(source)
    if source.is_dir():
        yield from _shard_pieces(source, tokenizer, split)
        return
    if not source.is_file():
        raise FileNotFoundError(f"text not found: {source} (pass a UTF-8 text file or a prepared data directory)")
    piece_chars = piece_chars or TEXT_PIECE_CHARS
    for text in _cut_text(text_blocks(source, piece_chars), tokenizer, piece_chars):
        yield torch.tensor(_encode(tokenizer, text), dtype=torch.long)


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]


_CUT = re.compile(r"(?<=\S)(?=\s)|(?<=\s)(?=\S)")  # where whitespace begins or ends


def _cut_text(blocks: Iterator[str], tokenizer: PreTrainedTokenizerBase, piece_chars: int) -> Iterator[str]:
    """Consecutive pieces of the text of ``blocks``, each at least ``piece_chars`` characters long
    (but the last), whose ids joined are the whole text's.

    A cut goes where whitespace begins or ends, and only where the ``CUT_CONTEXT`` characters on
    either side tokenise to the same ids apart as together (GPT-2's byte-level BPE, for one, can
    cut before a space but not after it; a SentencePiece-style tokenizer that marks the start of
    a text never cuts). A tokenizer looks no further across a cut than the length of a token, so
    the pieces' ids are those of the whole text."""
    buffer, search_from, failed = "", piece_chars, 0
    for block in blocks:
        buffer += block
        while failed < MAX_FAILED_CUTS:
            match = _CUT.search(buffer, search_from, len(buffer) - CUT_CONTEXT)
            if match is None:
                search_from = max(search_from, len(buffer) - CUT_CONTEXT - 1)
                break
            cut = match.start()
            left, right = buffer[max(0, cut - CUT_CONTEXT):cut], buffer[cut:cut + CUT_CONTEXT]
            if _encode(tokenizer, left + right) == _encode(tokenizer, left) + _encode(tokenizer, right):
                yield buffer[:cut]
                buffer, search_from, failed = buffer[cut:], piece_chars, 0
            else:
                search_from, failed = cut + 1, failed + 1
    if buffer:
        yield buffer


def _shard_pieces(data_dir: Path, tokenizer: PreTrainedTokenizerBase, split: str) -> Iterator[torch.Tensor]:
    manifest = read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise UserError(f"{data_dir} has no {split!r} split (it has {sorted(manifest['splits'])}): prepare it "
                        "with held-out data (swat data prepare ... --heldout-files FILES), or pass a text file")
    _check_same_tokenizer(data_dir, manifest, tokenizer)
    for chunk in TokenShards(data_dir, split).iter_chunks():
        yield torch.from_numpy(chunk)


def _check_same_tokenizer(data_dir: Path, manifest: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> None:
    if manifest["vocab_size"] != len(tokenizer):
        raise UserError(
            f"{data_dir} was tokenised with a vocabulary of {manifest['vocab_size']} tokens but the model's tokenizer "
            f"has {len(tokenizer)}: evaluate on a text file instead, or on data prepared with the model's tokenizer"
        )
    if manifest.get("tokenizer") is None:  # token data without a tokenizer: the sizes are all there is to compare
        return
    tokenizer_dir = data_dir / manifest["tokenizer"]
    try:
        data_tokenizer = load_tokenizer(tokenizer_dir)  # trust_remote_code=False
    except (OSError, ValueError) as error:
        raise FileNotFoundError(f"cannot load the tokenizer of {data_dir} from {tokenizer_dir} ({error}): "
                                "prepare the data again") from None
    if tokenizer_fingerprint(data_tokenizer) != tokenizer_fingerprint(tokenizer):
        raise UserError(
            f"{data_dir} was tokenised with another tokenizer than the model's (both have {len(tokenizer)} tokens, "
            "but their vocabularies, merges or pre-tokenisation differ, so the ids stand for other text): evaluate "
            "on a text file, or prepare the data with the model's tokenizer "
            "(swat data prepare FILES --tokenizer MODEL_DIR --out DIR)"
        )


def sequences_of(tokens: torch.Tensor, length: int, count: int) -> torch.Tensor:
    """The first ``count`` consecutive ``length``-token sequences of a stream, ``[count, length]``
    (fewer if the stream is short, at least one)."""
    available = len(tokens) // length
    if available == 0:
        raise UserError(f"the text has {len(tokens)} tokens, fewer than one sequence of {length}: "
                        "give a longer text or a shorter length")
    count = min(count, available)
    return tokens[: count * length].view(count, length)
