"""The Mamba2 baseline has the parameter count of the SWAT model it is compared with."""

import pytest
from transformers import Mamba2ForCausalLM

from swat.experiments.mamba2 import SIZE_TOLERANCE, mamba2_config, mamba2_fields, parameter_count
from swat.experiments.reproduce import ablation_config, choose_ablations
from swat.training import load_config

from .conftest import SMALL


@pytest.mark.parametrize("hidden_size, vocab_size", [(128, 4096), (32, 300), (64, 1000)])
def test_the_baseline_is_within_five_percent_of_the_swat_model(hidden_size, vocab_size):
    swat = load_config("tiny").model_config(vocab_size=vocab_size, hidden_size=hidden_size,
                                            intermediate_size=2 * hidden_size + 96)
    target = parameter_count(swat)
    fields = mamba2_fields(target, vocab_size=vocab_size, hidden_size=hidden_size)
    count = sum(p.numel() for p in Mamba2ForCausalLM(mamba2_config(fields, vocab_size)).parameters())
    assert abs(count - target) / target <= SIZE_TOLERANCE
    assert fields["type"] == "mamba2" and fields["hidden_size"] == hidden_size
    assert fields["num_heads"] * fields["head_dim"] == fields["expand"] * hidden_size


def test_parameter_count_counts_tied_weights_once():
    swat = load_config("tiny").model_config(vocab_size=1000)
    tied = load_config("tiny").model_config(vocab_size=1000, tie_word_embeddings=True)
    assert parameter_count(swat) - parameter_count(tied) == 1000 * swat.hidden_size


def test_a_size_no_mamba2_reaches_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no Mamba2 with hidden_size 32 has within 5% of 1,000 parameters"):
        mamba2_fields(1000, vocab_size=300, hidden_size=32)
    with pytest.raises(ValueError, match="must be a multiple of 64 .the Mamba2 head size"):
        mamba2_fields(10**6, vocab_size=300, hidden_size=40)


def test_the_mamba2_ablation_keeps_the_training_recipe_and_sizes_the_model(data_dir):
    (mamba2,) = choose_ablations(8, ["mamba2"])
    (swat,) = choose_ablations(8, ["swat"])
    overrides = [f"data.dir={data_dir}", *SMALL]
    config = ablation_config("tiny", overrides, mamba2, steps=5, seed=2)
    reference = ablation_config("tiny", overrides, swat, steps=5, seed=2)
    assert config.model_type == "mamba2" and config.model["hidden_size"] == 32
    assert config.train == reference.train and config.optim == reference.optim and config.data == reference.data
    ours, theirs = (parameter_count(c.model_config(vocab_size=300)) for c in (config, reference))
    assert abs(ours - theirs) / theirs <= SIZE_TOLERANCE and config.train.seed == 2
