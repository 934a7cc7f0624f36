"""Model: loading, description, metadata, the tokenizer against llama.cpp, chat templates."""

import pytest

import rocmforge as rf
from conftest import REFERENCE, jsonl


def test_describe_and_metadata(smol):
    info = smol.info
    assert (info.architecture, info.n_vocab, info.n_layer, info.n_embd) == ("llama", 49152, 30, 576)
    assert (info.n_head, info.n_head_kv, info.file_type_name) == (9, 3, "Q4_1")
    assert info.file_size == 98362432
    meta = smol.metadata()
    assert meta["general.architecture"] == "llama"
    assert int(meta["llama.block_count"]) == 30
    assert smol.meta("llama.embedding_length") == "576"
    with pytest.raises(rf.NotFound) as e:
        smol.meta("no.such.key")
    assert "no.such.key" in str(e.value) and isinstance(e.value, LookupError)
    assert repr(smol) == "<rocmforge.Model llama 135M Q4_1>"


@pytest.mark.parametrize("model,name", [("smol", "smollm2"), ("gemma", "gemma3")])
def test_tokenizer_matches_llama_cpp(model, name, request):
    if model == "smol":
        m = request.getfixturevalue("smol")
        records = jsonl(REFERENCE / name / "tokenize.jsonl")
        check(m, records)
    else:
        path = request.getfixturevalue("gemma_path")
        with rf.Model(path, vocab_only=True) as m:
            check(m, jsonl(REFERENCE / name / "tokenize.jsonl"))


def check(m, records):
    assert len(records) > 20
    for r in records:
        got = m.tokenize(r["text"], r["add_special"], r["parse_special"])
        assert got == r["tokens"], r["text"]
        assert m.detokenize(got) == r["detok"], r["text"]


def test_pieces_and_special_tokens(smol):
    v = smol.vocab
    assert v.n_tokens == 49152 and v.bos == 1 and v.eos == 2
    assert smol.is_eog(v.eos) and not smol.is_eog(504)
    assert smol.token_to_piece(504) == b"The"
    im_start = smol.tokenize("<|im_start|>", add_special=False)
    assert len(im_start) == 1
    assert smol.token_to_piece(im_start[0]) == b""
    assert smol.token_to_piece(im_start[0], special=True) == b"<|im_start|>"
    assert smol.detokenize(im_start, unparse_special=True) == "<|im_start|>"
    with pytest.raises(rf.InvalidArgument):
        smol.token_to_piece(49152)
    with pytest.raises(rf.InvalidArgument):
        smol.detokenize([1, -5])
    # A long text takes the second call of the two-call protocol.
    long = "word " * 3000
    assert smol.detokenize(smol.tokenize(long, add_special=False)) == long


def test_chat_template(smol):
    text = smol.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    custom = smol.apply_chat_template(
        [{"role": "user", "content": "Hi"}],
        template="{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}",
    )
    assert custom == "[user] Hi"
    with pytest.raises(rf.InvalidArgument) as e:
        smol.apply_chat_template([{"role": "user", "content": "x"}], template="{% if %}")
    assert e.value.message


def test_progress_callback(tiny_path):
    seen = []
    with rf.Model(tiny_path, progress=seen.append):
        pass
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)

    with pytest.raises(rf.Aborted) as e:
        rf.Model(tiny_path, progress=lambda f: False)
    assert isinstance(e.value, rf.Outcome) and e.value.status == 2

    class Stop(Exception):
        pass

    def boom(f):
        raise Stop()

    with pytest.raises(Stop):
        rf.Model(tiny_path, progress=boom)


def test_vocab_only_model_has_no_context(tiny_path):
    with rf.Model(tiny_path, vocab_only=True) as m:
        assert m.tokenize("Hello") == rf.Model(tiny_path).tokenize("Hello")
        with pytest.raises(rf.Unsupported):
            m.context()
