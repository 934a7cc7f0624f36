"""Context: greedy text and logits equal to llama.cpp's, streaming, sampling, batches,
the KV cache, abort and a full cache."""

import array
import threading

import pytest

import rocmforge as rf
from conftest import REFERENCE, require


def reference_context(model, **kw):
    # llama.cpp's float order: its logits bit for bit on x86-64 (docs/INFERENCE-NOTES.md).
    return model.context(n_ctx=512, numerics="llama_cpp", **kw)


def test_greedy_text_equals_llama_cpp(smol, smol_reference):
    for rec in smol_reference[:5]:
        with reference_context(smol) as ctx:
            assert smol.tokenize(rec["prompt"]) == rec["tokens"]
            stream = ctx.generate(rec["prompt"], max_tokens=32)
            text = stream.text()
            assert stream.tokens == [t for t in rec["greedy"] if not smol.is_eog(t)], rec["prompt"]
            assert text == rec["greedy_text"], rec["prompt"]
            assert stream.finish_reason == ("length" if len(rec["greedy"]) == 32 else "stop")


def test_logits_equal_llama_cpp(smol, smol_reference):
    want = array.array("f", require(REFERENCE / "smollm2" / "logits.0.f32", "reference").read_bytes())
    with reference_context(smol) as ctx:
        ctx.eval(smol_reference[0]["tokens"])
        got = ctx.logits()
        assert got.format == "f" and len(got) == smol.info.n_vocab
        assert got.tolist() == want.tolist()
        # Into a caller's buffer, and a view that outlives the next decode.
        out = array.array("f", bytes(4 * smol.info.n_vocab))
        assert ctx.logits(out=out) is not None and out == want
        ctx.eval([7042])
        assert got.tolist() == want.tolist()
        assert ctx.logits().tolist() != want.tolist()
        with pytest.raises(rf.BufferTooSmall):
            ctx.logits(out=array.array("f", [0.0] * 10))
        with pytest.raises(TypeError):
            ctx.logits(out=array.array("d", [0.0] * smol.info.n_vocab))


def test_streaming_pieces(smol):
    with smol.context(n_ctx=512) as ctx:
        whole = ctx.generate("Once upon a time", max_tokens=40).text()
        ctx.kv_clear()
        pieces = list(ctx.generate("Once upon a time", max_tokens=40))
        assert len(pieces) > 10 and "".join(pieces) == whole
        ctx.kv_clear()
        # Stop strings end the text before them, even when split over pieces.
        stop = whole[12:17]
        s = ctx.generate("Once upon a time", max_tokens=40, stop=[stop])
        assert s.text() == whole[: whole.index(stop)] and s.finish_reason == "stop"
        ctx.kv_clear()
        assert list(ctx.generate("Once upon a time", max_tokens=0)) == []


def test_stop_filter_holds_back_prefixes():
    from rocmforge.context import StopFilter

    f = StopFilter(["</end>"])
    assert f.push("abc</") == ("abc", False)
    assert f.push("en") == ("", False)
    assert f.push("x") == ("</enx", False)
    assert f.push("</end> tail") == ("", True)
    g = StopFilter(["ab"])
    assert g.push("xa") == ("x", False)
    assert g.flush() == "a"


def test_seeded_sampling_is_reproducible(smol):
    def run(seed):
        with smol.context(n_ctx=256) as ctx:
            s = rf.Sampler.from_options(temperature=0.9, seed=seed)
            return ctx.generate("My favourite food is", max_tokens=24, sampler=s).text()

    a = run(11)
    assert a == run(11)
    assert any(run(seed) != a for seed in (12, 13, 14))
    chain = rf.Sampler().top_k(5).dist()
    assert chain.seed == rf.Sampler(seed=chain.seed).seed
    # Sampling a caller's logits: a memoryview, an array, with bias and penalties.
    logits = array.array("f", [0.0] * 8)
    logits[3] = 5.0
    assert rf.Sampler().greedy().sample_logits(logits) == 3
    assert rf.Sampler().logit_bias({3: float("-inf")}).greedy().sample_logits(memoryview(logits)) == 0
    logits = array.array("f", [1.0] * 8)
    logits[3] = 5.0
    pen = rf.Sampler().penalties(last_n=4, repeat=100.0).greedy()
    pen.accept(3)
    assert pen.sample_logits(logits) == 0
    pen.reset()
    assert pen.sample_logits(logits) == 3


def test_batch_with_shared_prompt(smol):
    """One prompt decoded once, copied to three sequences, each continued alone, equals a
    context that decoded it by itself."""
    prompt = smol.tokenize("The three primary colors are")
    with smol.context(n_ctx=512) as alone:
        alone.eval(prompt)
        want = alone.logits().tolist()
    with smol.context(n_ctx=512, n_seq_max=3) as ctx, rf.Batch(64) as b:
        for i, t in enumerate(prompt):
            b.add(t, i, 0, logits=i == len(prompt) - 1)
        assert len(b) == len(prompt)
        ctx.decode(b)
        assert ctx.logits().tolist() == want  # one batch of several tokens, as alone
        for s in (1, 2):
            ctx.kv_copy(0, s)
        st = ctx.kv_stats()
        assert st.n_seqs == 3 and st.n_blocks_shared >= 1
        b.clear()
        for s in range(3):
            b.add(11, len(prompt), s, logits=True)
        ctx.decode(b)
        rows = [ctx.logits(i).tolist() for i in range(3)]
        assert rows[0] == rows[1] == rows[2]
        alone_next = smol.context(n_ctx=512)
        alone_next.eval(prompt + [11])
        assert rows[0] == alone_next.logits().tolist()
        alone_next.close()
        ctx.kv_remove(0, len(prompt))
        assert ctx.kv_pos_range(0) == (0, len(prompt) - 1)
        ctx.kv_keep(0)
        assert ctx.kv_stats().n_seqs == 1


def test_decode_greedy(smol):
    """decode_greedy keeps each output row's greedy token, the argmax of decode's logits
    (lowest id on ties), and no logits."""
    prompt = smol.tokenize("The three primary colors are")
    with smol.context(n_ctx=512) as full, smol.context(n_ctx=512) as greedy, rf.Batch(64) as b:
        for i, t in enumerate(prompt):
            b.add(t, i, 0, logits=i >= len(prompt) - 3)
        full.decode(b)
        greedy.decode_greedy(b)
        for r in range(3):
            row = full.logits(r).tolist()
            best = max(range(len(row)), key=lambda t: (row[t], -t))
            assert greedy.greedy_token(r) == best == full.greedy_token(r)
        assert greedy.greedy_token() == greedy.greedy_token(2)
        with pytest.raises(rf.InvalidArgument, match="greedy"):
            greedy.logits()
        with pytest.raises(rf.InvalidArgument):
            greedy.greedy_token(3)


def test_abort_callback(smol):
    stop = threading.Event()
    with smol.context(n_ctx=256, abort=stop.is_set) as ctx:
        stop.set()
        with pytest.raises(rf.Aborted):
            ctx.eval(smol.tokenize("Hello there"))
        assert ctx.kv_pos_range() == (-1, -1)
        stop.clear()
        ctx.eval(smol.tokenize("Hello there"))
        assert ctx.kv_pos_range() == (0, 1)

    class Boom(Exception):
        pass

    def boom():
        raise Boom()

    with smol.context(n_ctx=256, abort=boom) as ctx:
        with pytest.raises(Boom):
            ctx.eval([1, 2])
        assert ctx.kv_pos_range() == (-1, -1)


def test_full_cache(tiny):
    with tiny.context(n_ctx=32) as ctx:
        ctx.eval(list(range(1, 31)))
        with pytest.raises(rf.KvCacheFull):
            ctx.eval([5, 6, 7])
        assert ctx.kv_pos_range() == (0, 29)
        ctx.kv_remove(0, 20)
        ctx.eval([5, 6, 7])
        assert ctx.kv_pos_range() == (0, 22)
