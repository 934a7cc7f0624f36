"""Errors: bad files, bad arguments, closed handles, the messages; log routing."""

import logging

import pytest

import rocmforge as rf


def test_missing_file():
    with pytest.raises(rf.ModelIOError) as e:
        rf.Model("/nonexistent/model.gguf")
    assert isinstance(e.value, OSError)
    assert e.value.call == "rf_model_load" and "/nonexistent/model.gguf" in e.value.message


def test_malformed_files(tmp_path, tiny_path):
    data = tiny_path.read_bytes()
    cases = {
        "not-gguf.gguf": b"NOPE" + data[4:],
        "truncated.gguf": data[: len(data) // 2],
        "empty.gguf": b"",
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(rf.ModelFormatError) as e:
            rf.Model(p)
        assert e.value.message, name
        assert str(e.value).startswith("rf_model_load: "), str(e.value)
    # The library is fine after them.
    with rf.Model(tiny_path) as m:
        assert m.info.n_vocab > 0


def test_bad_arguments(tiny_path):
    with pytest.raises(ValueError):
        rf.Model(tiny_path, backend="tpu")
    with rf.Model(tiny_path) as m:
        with pytest.raises(rf.InvalidArgument) as e:
            m.context(n_seq_max=100000)
        assert "n_seq_max" in e.value.message
        with pytest.raises(ValueError):
            m.context(kv_type="int3")
        with m.context(n_ctx=64) as ctx, rf.Batch(4) as b:
            b.add(m.info.n_vocab + 7, 0)  # checked by decode
            with pytest.raises(rf.InvalidArgument) as e:
                ctx.decode(b)
            assert str(m.info.n_vocab + 7) in e.value.message
            assert ctx.kv_pos_range(0) == (-1, -1)
            with pytest.raises(rf.InvalidArgument):
                ctx.logits()  # no decode yet
            with pytest.raises(rf.InvalidArgument):
                ctx.kv_free(5)
            with pytest.raises(rf.InvalidArgument):
                rf.Batch(0)
        with pytest.raises(rf.InvalidArgument):
            rf.Sampler().greedy().top_k(3)  # nothing after a selector


def test_closed_handles(tiny_path):
    m = rf.Model(tiny_path)
    ctx = m.context(n_ctx=64)
    m.close()
    m.close()  # twice is fine
    assert m.closed
    with pytest.raises(rf.ClosedError):
        m.tokenize("x")
    # The context keeps the model's memory alive.
    ctx.eval([1, 2, 3])
    assert len(ctx.logits()) > 0
    ctx.close()
    with pytest.raises(rf.ClosedError):
        ctx.eval([1])


def test_log_routing(tiny_path, caplog):
    got = []
    rf.set_log_callback(lambda level, text: got.append((level, text)))
    try:
        rf.Model(tiny_path).close()
        assert any(level == 1 and "load" in text.lower() for level, text in got), got
        rf.log_to_logging()
        with caplog.at_level(logging.DEBUG, logger="rocmforge"):
            rf.Model(tiny_path).close()
        assert any(r.name == "rocmforge" for r in caplog.records)
    finally:
        rf.set_log_callback(None)
