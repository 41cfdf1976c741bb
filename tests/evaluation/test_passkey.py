import math
import random
from types import SimpleNamespace

import pytest
import torch

from swat import SWATForCausalLM
from swat.cli import main
from swat.evaluation.passkey import KEY_LINE, PasskeyPrompts, default_grid, evaluate_passkey, score_answer

from .conftest import read_outputs, tiny_config

FILLER = " the king and queen walk to the castle where a fool sings of love and war."


class BigramRetriever(torch.nn.Module):
    """An ideal retriever with a limited reach: at every position it predicts the token that
    followed the latest earlier occurrence of the last two tokens within ``reach`` tokens."""

    def __init__(self, vocab_size: int, reach: int):
        super().__init__()
        self.config = tiny_config(vocab_size)
        self.vocab_size, self.reach = vocab_size, reach
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.dummy.device

    def forward(self, input_ids, cache=None, past_key_values=None, logits_to_keep=0, **kwargs):
        """The "cache" is the list of tokens seen so far (under either of transformers' names)."""
        ids = (cache or past_key_values or []) + input_ids[0].tolist()
        new = range(len(ids) - input_ids.shape[1], len(ids))
        logits = torch.zeros(1, len(new), self.vocab_size)
        for row, t in enumerate(new):
            for s in range(t - 1, max(0, t - self.reach), -1):
                if ids[s - 1:s + 1] == ids[t - 1:t + 1]:
                    logits[0, row, ids[s + 1]] = 20.0
                    break
        return SimpleNamespace(logits=logits[:, -logits_to_keep:], cache=ids, past_key_values=ids)


def test_prompt_layout(tokenizer):
    prompts = PasskeyPrompts(tokenizer)
    context, answer = prompts.build("12345", length=300, distance=120)
    assert len(context) == 300
    key_line = prompts._ids(KEY_LINE.format(key="12345"))
    assert context[300 - 120:300 - 120 + len(key_line)] == key_line
    assert tokenizer.decode(answer).strip() == "12345"
    assert tokenizer.decode(context).endswith("What is the pass key? The pass key is")
    assert prompts.build("12345", length=100, distance=120) is None
    assert prompts.build("12345", length=300, distance=5) is None
    assert len(prompts.random_key(random.Random(0))) == 5


def test_accuracy_follows_the_reach_of_an_ideal_retriever(tokenizer):
    model = BigramRetriever(len(tokenizer), reach=120)
    result = evaluate_passkey(model, tokenizer, [240, 400], [70, 100, 150, 500], trials=3,
                              chunk_size=37, filler=FILLER)
    accuracy = {(c["length"], c["distance"]): c["accuracy"] for c in result["cells"]}
    assert accuracy[(240, 70)] == accuracy[(240, 100)] == accuracy[(400, 100)] == 1.0
    assert accuracy[(400, 150)] == 0.0
    assert math.isnan(accuracy[(240, 150)]) and math.isnan(accuracy[(400, 500)])
    nll = {(c["length"], c["distance"]): c["answer_nll"] for c in result["cells"]}
    assert nll[(400, 70)] < 0.01 < nll[(400, 150)]


def test_answer_score_is_the_teacher_forced_loss_of_one_full_forward():
    model = SWATForCausalLM(tiny_config(97)).double().eval()
    ids = torch.randint(0, 97, (60,))
    context, answer = ids[:55].tolist(), ids[55:].tolist()
    with torch.no_grad():
        logits = model(ids[None, :-1]).logits[0, 54:]
    expected = torch.nn.functional.cross_entropy(logits, ids[55:]).item()
    correct, nll = score_answer(model, context, answer, chunk_size=16)
    assert nll == pytest.approx(expected, rel=1e-6)  # next_token_loss computes in float32
    assert correct == bool((logits.argmax(-1) == ids[55:]).all())


def test_default_grid_spans_window_receptive_field_and_beyond():
    lengths, distances = default_grid(tiny_config(97, sliding_window=16, num_hidden_layers=2))
    reach = 2 * 15 + 1
    assert distances[0] < 16 < distances[1] < reach < distances[2]
    assert lengths == [reach, 2 * reach, 4 * reach]


def test_cli(tmp_path, swat_dir, softmax_dir):
    out = tmp_path / "passkey"
    code = main(["eval", "passkey", "--model", str(swat_dir), str(softmax_dir), "--lengths", "200,300",
                 "--distances", "70,150", "--trials", "2", "--out", str(out)])
    assert code == 0
    results, markdown = read_outputs(out, "passkey")
    assert len(results) == 2 and len(results[0]["cells"]) == 4
    assert all(0.0 <= c["accuracy"] <= 1.0 for r in results for c in r["cells"] if c["trials"])
    assert "distance" in markdown


def test_keys_need_digits(tokenizer):
    with pytest.raises(ValueError, match="at least one digit"):
        PasskeyPrompts(tokenizer, digits=0)
