"""Engine: concurrent requests from Python threads, streaming, chat messages, cancel, Busy."""

import threading
import time

import pytest

import rocmforge as rf

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "Water boils at a temperature of",
    "A list of prime numbers: 2, 3, 5, 7, 11,",
    "In 1969, Neil Armstrong became the first person to",
    "My favourite food is",
    "def add(a, b):",
]


def test_concurrent_requests_equal_each_alone(smol):
    with smol.context(n_ctx=512) as ctx:
        alone = {}
        for p in PROMPTS:
            ctx.kv_clear()
            alone[p] = ctx.generate(p, max_tokens=24).text()
    with smol.engine(n_ctx=2048, n_seq_max=4) as engine:
        got = {}

        def client(p):
            with engine.submit(p, max_tokens=24) as req:
                got[p] = "".join(req)  # streamed, piece by piece
                assert req.finish_reason in ("length", "stop")
                st = req.stats()
                assert st.n_prompt_tokens == len(smol.tokenize(p)) and st.total_s > 0

        threads = [threading.Thread(target=client, args=(p,)) for p in PROMPTS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == alone
        # The engine publishes its counters after each step: wait for the last one.
        deadline = time.monotonic() + 30
        while engine.stats().n_running and time.monotonic() < deadline:
            time.sleep(0.01)
        st = engine.stats()
        assert st.n_finished == len(PROMPTS) and st.n_running == 0 and st.n_submitted == len(PROMPTS)


def test_messages_tokens_and_stop(smol):
    with smol.engine(n_ctx=1024, n_seq_max=2) as engine:
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        chat = engine.generate(messages=msgs, max_tokens=24)
        rendered = smol.apply_chat_template(msgs)
        assert engine.generate(rendered, max_tokens=24) == chat
        toks = smol.tokenize("The capital of France is")
        text = engine.generate(tokens=toks, max_tokens=16)
        assert text.startswith(" Paris")
        with engine.submit(tokens=toks, max_tokens=16, stop=["."]) as req:
            assert req.text() == " Paris" and req.finish_reason == "stop"
        with pytest.raises(ValueError):
            engine.submit("a", tokens=[1])
        with pytest.raises(rf.InvalidArgument):
            engine.submit(tokens=[smol.info.n_vocab])


def test_cancel_and_busy(smol):
    with smol.engine(n_ctx=1024, n_seq_max=1, max_queued=1) as engine:
        first = engine.submit("The capital of France is", max_tokens=400)
        assert first.next_piece(timeout=30)  # running
        second = engine.submit("Another one.", max_tokens=400)  # waits in the queue
        with pytest.raises(rf.Busy):
            engine.submit("One too many.", max_tokens=4)
        first.cancel()
        first.text()
        assert first.finish_reason == "cancelled"
        second.close()  # cancels it; the engine drops it from its queue on its next step
        deadline = time.monotonic() + 30
        while engine.stats().n_waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.stats().n_waiting == 0
        assert engine.generate("The capital of France is", max_tokens=2) == " Paris."
    # Requests stay readable after their engine is gone.
    assert first.stats().finish_reason == "cancelled"
    first.close()


def test_ignore_eog_generates_past_the_end(smol):
    with smol.engine(n_ctx=1024, n_seq_max=2) as engine:
        msgs = [{"role": "user", "content": "Answer with one word: is the sky blue?"}]
        with engine.submit(messages=msgs, max_tokens=64) as req:
            short = req.text()
            n = req.stats().n_generated_tokens
            assert req.finish_reason == "stop" and n < 60
        with engine.submit(messages=msgs, max_tokens=n + 8, ignore_eog=True) as req:
            more = req.text()
            assert req.finish_reason == "length"
            assert req.stats().n_generated_tokens == n + 8
        assert more.startswith(short)
