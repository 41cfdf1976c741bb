import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from swat import SWATForCausalLM, SWATModel
from tests.conftest import tiny_config


def _model(**overrides) -> SWATForCausalLM:
    return SWATForCausalLM(tiny_config(**overrides)).double().eval()


def test_save_and_auto_load_give_identical_logits(tmp_path):
    model = _model(qk_norm=True, sigmoid_bias=-1.0)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    assert isinstance(loaded, SWATForCausalLM)
    tokens = torch.randint(0, 97, (2, 40))
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)
    assert isinstance(AutoModel.from_pretrained(tmp_path), SWATModel)


def test_loss_is_next_token_cross_entropy():
    model = _model()
    tokens = torch.randint(0, 97, (2, 30))
    output = model(tokens, labels=tokens)
    expected = torch.nn.functional.cross_entropy(output.logits[:, :-1].reshape(-1, 97), tokens[:, 1:].reshape(-1))
    # Hugging Face's loss upcasts the logits to float32.
    torch.testing.assert_close(output.loss, expected.float())


def test_gradient_checkpointing_gives_the_same_gradients():
    model = _model().train()
    tokens = torch.randint(0, 97, (2, 30))
    model(tokens, labels=tokens).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # as the trainer
    calls = []
    model.model.layers[0].self_attn.register_forward_hook(lambda *_: calls.append(1))
    model(tokens, labels=tokens).loss.backward()
    assert len(calls) == 2, "the layer should run again during backward"
    for expected, param in zip(plain, model.parameters(), strict=True):
        torch.testing.assert_close(param.grad, expected)


def test_window_limits_what_a_token_can_see():
    """With L layers and window w, logit i depends only on tokens i-L*(w-1) .. i (SPEC section 2)."""
    model = _model(sliding_window=4)
    tokens = torch.randint(0, 97, (1, 30))
    changed = tokens.clone()
    changed[0, 10] = (tokens[0, 10] + 1) % 97
    diff = (model(tokens).logits - model(changed).logits).abs().amax(-1)[0]
    reach = 2 * (4 - 1)
    assert torch.all(diff[:10] == 0)
    assert torch.all(diff[10:10 + reach + 1] > 0)
    assert torch.all(diff[10 + reach + 1:] == 0)


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
    assert not unexpected and all("rotary" in name for name in missing)


@pytest.mark.parametrize("window", [5, None])
def test_softmax_baseline_matches_mistral_and_llama(window):
    """softmax + no ALiBi + RoPE is Mistral with a window, Llama without."""
    ours = _model(attention_activation="softmax", alibi="none", sliding_window=window)
    dims = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False)
    if window is None:
        theirs = LlamaForCausalLM(LlamaConfig(**dims, attention_bias=False, mlp_bias=False))
    else:
        theirs = MistralForCausalLM(MistralConfig(**dims, sliding_window=window))
    theirs.config._attn_implementation = "eager"
    theirs = theirs.double().eval()
    _copy_weights(theirs, ours)
    tokens = torch.randint(0, 97, (2, 37))
    # HF computes RoPE angles in float32, we in float64: agreement to float32 precision.
    torch.testing.assert_close(ours(tokens).logits, theirs(tokens).logits, rtol=1e-5, atol=1e-5)


def test_sigmoid_model_differs_from_the_softmax_one():
    softmax = _model(attention_activation="softmax")
    sigmoid = _model()
    sigmoid.load_state_dict(softmax.state_dict())
    tokens = torch.randint(0, 97, (1, 20))
    assert not torch.allclose(softmax(tokens).logits, sigmoid(tokens).logits)


def test_padding_is_never_attended():
    model = _model()
    tokens = torch.randint(1, 97, (1, 12))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), tokens], dim=1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 12, dtype=torch.long)], dim=1)
    alone = model(tokens).logits
    with_padding = model(padded, attention_mask=mask).logits[:, 5:]
    torch.testing.assert_close(with_padding, alone)


def test_tied_embeddings_share_one_matrix(tmp_path):
    model = _model(tie_word_embeddings=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    tokens = torch.randint(0, 97, (1, 20))
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)
