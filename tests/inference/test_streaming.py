"""The one streaming loop (``next_token_nll``) scores a stream the same however it is cut into
pieces and chunks: as one forward over the whole stream."""

import pytest
import torch

from swat import SWATForCausalLM
from swat.evaluation.perplexity import stream_loss
from swat.inference import next_token_nll, streaming_nll
from swat.models.loss import next_token_loss
from tests.conftest import tiny_config


@pytest.mark.parametrize("cuts, chunk_size", [((), 5), ((7,), 5), ((1, 2, 10, 20), 3), ((5, 10), 5), ((13,), 64)])
def test_pieces_and_chunks_do_not_change_the_losses(cuts, chunk_size):
    model = SWATForCausalLM(tiny_config()).double().eval()
    tokens = torch.randint(0, 97, (30,))
    with torch.no_grad():
        expected = next_token_loss(model(tokens[None], use_cache=False).logits[:, :-1], tokens[None, 1:],
                                   reduction="none")
    pieces = [tokens[None, a:b] for a, b in zip((0, *cuts), (*cuts, 30), strict=True)]
    nll = torch.cat(list(next_token_nll(model, pieces, chunk_size=chunk_size)), dim=1)
    torch.testing.assert_close(nll, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(streaming_nll(model, tokens, chunk_size), expected[0], rtol=0, atol=1e-6)
    loss = stream_loss(model, [piece[0] for piece in pieces], chunk_size=chunk_size)
    assert (loss.tokens, loss.scored) == (30, 29)
    assert loss.nll_sum == pytest.approx(expected.sum().item(), abs=1e-5)


def test_max_tokens_reads_no_piece_past_them():
    model = SWATForCausalLM(tiny_config()).eval()
    read = []

    def pieces():
        for i in range(5):
            read.append(i)
            yield torch.arange(4) + i

    loss = stream_loss(model, pieces(), chunk_size=3, max_tokens=6)
    assert (loss.tokens, loss.scored, read) == (6, 5, [0, 1])
