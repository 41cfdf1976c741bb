import pytest
from transformers import AutoTokenizer

from swat.data.tokenizer import EOS_TOKEN, encode_documents, load_tokenizer, train_bpe_tokenizer
from tests.conftest import make_text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tok = train_bpe_tokenizer([make_text(seed=i) for i in range(4)], 320, out, show_progress=False)
    return tok, out


def test_train_save_and_reload_with_auto_tokenizer(trained):
    tok, out = trained
    assert len(tok) == 320 and tok.eos_token == EOS_TOKEN and tok.pad_token == EOS_TOKEN
    reloaded = AutoTokenizer.from_pretrained(out)
    assert len(reloaded) == 320 and reloaded.eos_token_id == tok.eos_token_id == 0
    assert reloaded.pad_token_id == reloaded.eos_token_id
    text = make_text(50, seed=9)
    ids = reloaded(text, add_special_tokens=False)["input_ids"]
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text.encode()) / 2  # merges were learned
    assert reloaded.decode(ids) == text


def test_byte_level_encodes_any_text_losslessly(trained):
    tok, _ = trained
    for text in ["Hello\tWorld\n", "naïve café ☃ 𝄞 日本", "  leading spaces", ""]:
        ids = encode_documents(tok, [text])[0]
        assert tok.unk_token_id not in ids and tok.decode(ids) == text


def test_literal_eos_string_in_text_is_not_the_eos_token(trained):
    tok, _ = trained
    ids = encode_documents(tok, ["the king <|endoftext|> wakes"])[0]
    assert tok.eos_token_id not in ids
    assert tok.decode(ids) == "the king <|endoftext|> wakes"


def test_train_from_files_equals_train_from_texts(tmp_path):
    texts = [make_text(seed=i) for i in range(3)]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text(text)
    from_files = train_bpe_tokenizer(paths, 300, show_progress=False)
    from_texts = train_bpe_tokenizer(texts, 300, show_progress=False)
    assert from_files.get_vocab() == from_texts.get_vocab()


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        train_bpe_tokenizer(["abc"], 100, show_progress=False)
    with pytest.raises(TypeError, match="pathlib.Path"):
        train_bpe_tokenizer([b"bytes"], 300, show_progress=False)
    with pytest.raises(OSError, match="could not load the tokenizer"):
        load_tokenizer(tmp_path / "nowhere")


def test_load_tokenizer_requires_eos(trained, tmp_path):
    tok, _ = trained
    no_eos = AutoTokenizer.from_pretrained(trained[1])
    no_eos.eos_token = None
    no_eos.save_pretrained(tmp_path / "no_eos")
    with pytest.raises(ValueError, match="no eos_token"):
        load_tokenizer(tmp_path / "no_eos")
    assert load_tokenizer(trained[1]).eos_token_id == tok.eos_token_id
