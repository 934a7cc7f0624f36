#!/usr/bin/env python3
"""generate: stream text from a GGUF model with the rocmforge Python package.

    PYTHONPATH=bindings/python python3 examples/python/generate.py MODEL.gguf \
        [-p PROMPT] [-n N_PREDICT] [--temp T] [--seed S] [--chat] [--llama-cpp]

Greedy by default; with --temp above 0 the chain is top-k 40, top-p 0.95, min-p 0.05,
the temperature and a seeded draw. --chat wraps the prompt as a user message in the
model's chat template. --llama-cpp asks for llama.cpp's float order (its greedy text on
x86-64). The library is found as the package's docstring says (ROCMFORGE_LIBRARY, an
installed librocmforge, or this checkout's target/release).
"""

import argparse
import sys

import rocmforge as rf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-p", "--prompt", default="The capital of France is")
    ap.add_argument("-n", "--n-predict", type=int, default=32)
    ap.add_argument("--temp", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--chat", action="store_true")
    ap.add_argument("--llama-cpp", action="store_true")
    args = ap.parse_args()
    try:
        with rf.Model(args.model) as model:
            numerics = "llama_cpp" if args.llama_cpp else "batch_invariant"
            with model.context(n_ctx=2048, numerics=numerics) as ctx:
                prompt = args.prompt
                if args.chat:
                    prompt = model.apply_chat_template([{"role": "user", "content": prompt}])
                else:
                    sys.stdout.write(prompt)
                with rf.Sampler.from_options(temperature=args.temp, seed=args.seed) as sampler:
                    stream = ctx.generate(prompt, max_tokens=args.n_predict, sampler=sampler)
                    for piece in stream:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                sys.stdout.write("\n")
                print(f"[{len(stream.tokens)} tokens, {stream.finish_reason}]", file=sys.stderr)
    except rf.RocmforgeError as e:
        print(f"generate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
