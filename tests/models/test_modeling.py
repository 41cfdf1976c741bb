import contextlib
import logging
import warnings
import weakref

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

from swat import SWATForCausalLM, SWATModel, preset_config
from swat.models import RollingCache
from swat.models.compat import enable_activation_checkpointing, output_cache
from tests.conftest import make_tokenizer
from tests.conftest import tiny_model as _model


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
    labels = tokens.clone()
    labels[0, 20:] = -100
    output = model(tokens, labels=labels)
    expected = torch.nn.functional.cross_entropy(output.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1))
    # Hugging Face's loss upcasts the logits to float32.
    torch.testing.assert_close(output.loss, expected.float())
    # gradient accumulation: the sum over the scored tokens, divided by the step's count of them
    summed = model(tokens, labels=labels, num_items_in_batch=torch.tensor(100)).loss
    torch.testing.assert_close(summed, expected.float() * (labels[:, 1:] != -100).sum() / 100)


def test_model_takes_the_cache_under_both_names():
    """transformers up to 5.17 calls it past_key_values, later releases cache."""
    model = _model()
    tokens = torch.randint(0, 97, (1, 20))
    full = model(tokens).logits
    cache = RollingCache(model.config)
    first = model(tokens[:, :12], past_key_values=cache).logits
    rest = model(tokens[:, 12:], cache=cache).logits
    torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=0, atol=1e-10)
    assert output_cache(model(tokens[:, :1], cache=cache)) is cache
    with pytest.raises(ValueError, match="not both"):
        model(tokens, cache=cache, past_key_values=cache)


def test_return_dict_false_gives_a_tuple():
    model = _model()
    tokens = torch.randint(0, 97, (1, 10))
    logits, _cache = model(tokens, return_dict=False)
    torch.testing.assert_close(logits, model(tokens).logits)


def test_masks_and_segments_must_cover_the_cached_tokens():
    model = _model()
    tokens = torch.randint(0, 97, (2, 12))
    cache = RollingCache(model.config)
    model(tokens, cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask must cover the 12 cached tokens and the 1 new ones.*\[2, 13\]"):
        model(tokens[:, :1], cache=cache, attention_mask=torch.ones(2, 1))
    with pytest.raises(ValueError, match="segment_ids must cover"):
        model(tokens, segment_ids=torch.zeros(2, 11, dtype=torch.long), use_cache=False)
    with pytest.raises(ValueError, match="not both"):
        model(tokens, attention_mask=torch.ones(2, 12), segment_ids=torch.zeros(2, 12), use_cache=False)
    with pytest.raises(ValueError, match="2-D"):
        model(tokens, attention_mask=torch.ones(2, 1, 12, 12), use_cache=False)


def test_a_decoding_step_never_reads_a_tensor_on_the_host(monkeypatch):
    """No ``bool(tensor)``/``.item()`` in the model's forward: on a GPU each would wait for the device."""
    model = _model()
    tokens = torch.randint(1, 97, (2, 20))
    mask = torch.ones(2, 21, dtype=torch.long)
    mask[0, :3] = 0
    cache = RollingCache(model.config)
    with torch.no_grad():
        model(tokens, attention_mask=mask[:, :20], cache=cache)

        def host_read(*_):
            raise AssertionError("a tensor value was read on the host")

        for name in ("__bool__", "item", "tolist", "__int__", "__float__"):
            monkeypatch.setattr(torch.Tensor, name, host_read)
        model(tokens[:, :1], attention_mask=mask, cache=cache)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = _model().train()
    tokens = torch.randint(0, 97, (2, 30))
    model(tokens, labels=tokens).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    enable_activation_checkpointing(model)
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


@pytest.mark.parametrize("output_hidden_states", [False, True])
def test_a_layers_input_is_freed_after_it_unless_hidden_states_are_asked_for(output_hidden_states):
    """While layer ``i`` runs, the inputs of layers ``1 .. i - 1`` are gone (the embeddings, layer
    0's input, are the forward's own argument) unless the caller asked for them."""
    model = _model(num_hidden_layers=4)
    inputs, alive = [], []

    def record(layer, args):
        alive.append([ref() is not None for ref in inputs[1:]])
        inputs.append(weakref.ref(args[0]))

    for layer in model.model.layers:
        layer.register_forward_pre_hook(record)
    with torch.no_grad():
        out = model(torch.ones(1, 16, dtype=torch.long), output_hidden_states=output_hidden_states)
    assert alive == [[], [], [output_hidden_states], [output_hidden_states] * 2]
    assert (out.hidden_states is not None) == output_hidden_states


def test_a_misspelt_forward_argument_is_an_error():
    model = _model()
    with pytest.raises(TypeError, match="unexpected keyword argument 'attenton_mask'"):
        model(torch.ones(1, 4, dtype=torch.long), attenton_mask=torch.ones(1, 4))


def test_what_generate_passes_is_accepted():
    """The forward takes no ``**kwargs``; every option below makes generate pass something."""
    tokenizer = make_tokenizer("the cat sat on the mat. " * 20, vocab_size=300)
    model = _model(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    for options in [dict(do_sample=True, top_k=5), dict(num_beams=2), dict(use_cache=False), dict(attention_mask=mask),
                    dict(output_hidden_states=True, output_attentions=True, output_scores=True,
                         output_logits=True, return_dict_in_generate=True),
                    dict(stop_strings=["mat"], tokenizer=tokenizer), dict(prefill_chunk_size=2)]:
        model.generate(ids, max_new_tokens=3, pad_token_id=0, **options)


@contextlib.contextmanager
def _transformers_warnings():
    """What transformers logs (its loggers do not propagate to pytest's) and warns, as strings."""
    records, handler = [], logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield records
        records.extend(str(warning.message) for warning in caught)
    finally:
        library.removeHandler(handler)


def _generate(model, prompt_length: int, **options) -> torch.Tensor:
    prompt = torch.randint(1, model.config.vocab_size, (1, prompt_length), generator=torch.Generator().manual_seed(0))
    return model.generate(prompt, pad_token_id=0, do_sample=False, **options)


def test_a_window_model_generates_past_max_position_embeddings_without_a_length_warning(tmp_path):
    """transformers warns past ``max_position_embeddings`` ("you may observe exceptions") and caps
    its default length there; a window model takes any length (docs/spec.md section 4), also when
    its config.json was saved with a ``max_position_embeddings`` (the presets had 512). Each test
    uses its own limit: transformers warns once per message and process."""
    _model(max_position_embeddings=29).save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert model.config.max_position_embeddings == 29 and model.config.sliding_window == 8
    tiny = SWATForCausalLM(preset_config("tiny")).eval()
    assert tiny.config.max_position_embeddings == 512
    with _transformers_warnings() as caught:
        assert _generate(model, 10, max_new_tokens=30).shape[1] == 40
        assert _generate(model, 35, max_new_tokens=None).shape[1] == 35 + 20  # the default: 20 new tokens
        assert _generate(tiny, 500, max_new_tokens=20).shape[1] == 520
    assert not [message for message in caught if "predefined maximum length" in message], caught


def test_a_full_attention_model_keeps_its_length_limit():
    model = _model(sliding_window=None, max_position_embeddings=31)
    with _transformers_warnings() as caught:
        assert _generate(model, 10, max_new_tokens=30).shape[1] == 40
    assert any("exceeded the model's predefined maximum length (31)" in message for message in caught), caught
    with pytest.raises(ValueError, match="Input length of input_ids is 35, but `max_length` is set to 31"):
        _generate(model, 35, max_new_tokens=None)
