import numpy as np
import pytest
import torch

from swat.training.sampler import WindowSampler, document_segments, eval_starts, split_batch


class Stream:
    def __init__(self, n: int) -> None:
        self.tokens = np.arange(n, dtype=np.int64) * 7 % 1000

    def __len__(self) -> int:
        return len(self.tokens)

    def window(self, start: int, length: int) -> np.ndarray:
        return self.tokens[start:start + length]


def test_windows_are_stream_slices_and_deterministic():
    stream = Stream(5000)
    sampler = WindowSampler(stream, seq_len=16, batch_size=8, seed=3)
    batch = sampler.micro_batch(step=5, micro=1, micro_batch_size=4)
    assert batch.shape == (4, 17) and batch.dtype == torch.int64
    for row, start in zip(batch, sampler.starts(5)[4:8], strict=True):
        assert torch.equal(row, torch.from_numpy(stream.tokens[start:start + 17]))
    again = WindowSampler(stream, seq_len=16, batch_size=8, seed=3)
    assert torch.equal(again.micro_batch(5, 1, 4), batch)
    assert not np.array_equal(sampler.starts(5), sampler.starts(6))
    assert not np.array_equal(sampler.starts(5), WindowSampler(stream, 16, 8, seed=4).starts(5))
    starts = np.concatenate([sampler.starts(s) for s in range(200)])
    assert starts.min() >= 0 and starts.max() <= len(stream) - 17
    assert starts.max() > len(stream) - 200  # the whole stream is reachable


@pytest.mark.parametrize("world, micro_batch_size", [(1, 2), (2, 1), (2, 2), (4, 1), (2, 4), (4, 8)])
def test_ranks_split_the_same_global_batch(world, micro_batch_size):
    """Also when a process's share is smaller than ``micro_batch_size`` (the ``tiny`` recipe, 8 and
    8, on 2 processes): the share is one micro-batch."""
    sampler = WindowSampler(Stream(3000), seq_len=8, batch_size=4, seed=0)
    whole = sampler.micro_batch(7, 0, 4)
    size, count = split_batch(4, micro_batch_size, world)
    assert size == min(micro_batch_size, 4 // world) and size * count * world == 4
    parts = [sampler.micro_batch(7, m, micro_batch_size, rank, world) for rank in range(world) for m in range(count)]
    assert torch.equal(torch.cat(parts), whole)


def test_bad_splits_and_short_streams_are_errors():
    sampler = WindowSampler(Stream(100), seq_len=8, batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"train.batch_size \(4\) must be a multiple of train.micro_batch_size "
                                         r"\(3\): change one of them, e.g. train.micro_batch_size=2"):
        sampler.micro_batch(0, 0, 3)
    with pytest.raises(ValueError, match=r"multiple of the number of processes \(3\)"):
        sampler.micro_batch(0, 0, 1, world=3)
    with pytest.raises(ValueError, match=r"each process's share of train.batch_size \(12 / 2 processes = 6\) must "
                                         r"be a multiple of train.micro_batch_size \(4\).*micro_batch_size=3"):
        split_batch(12, 4, 2)
    with pytest.raises(IndexError):
        sampler.micro_batch(0, 2, 2)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        WindowSampler(Stream(8), seq_len=8, batch_size=1, seed=0)


def test_document_segments_count_eos_before_each_position():
    eos = 0
    tokens = torch.tensor([[5, 0, 6, 7, 0, 0, 8], [0, 1, 2, 3, 4, 5, 6]])
    expected = torch.tensor([[0, 0, 1, 1, 1, 2, 3], [0, 1, 1, 1, 1, 1, 1]])
    assert torch.equal(document_segments(tokens, eos), expected)


def test_eval_starts_are_fixed_spread_and_inside():
    starts = eval_starts(1000, 99, 5)
    assert starts.tolist() == [0, 225, 450, 675, 900]
    assert eval_starts(20, 9, 50).tolist() == list(range(11))  # no repeats when the stream is short
