"""The example program and the package as pip installs it."""

import os
import shutil
import subprocess
import sys

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "python" / "generate.py"


def run(args, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=e, timeout=300)


def test_example_prints_llama_cpp_greedy_text(smol_path, smol_reference):
    pkg = str(ROOT / "bindings" / "python")
    rec = smol_reference[0]
    out = run([EXAMPLE, smol_path, "-p", rec["prompt"], "-n", "32", "--llama-cpp"], PYTHONPATH=pkg)
    assert out.returncode == 0, out.stderr
    assert out.stdout == rec["prompt"] + rec["greedy_text"] + "\n"
    assert "[32 tokens, length]" in out.stderr
    # Seeded sampling through the example: the same seed, the same text.
    a = run([EXAMPLE, smol_path, "-n", "16", "--temp", "0.8", "--seed", "3"], PYTHONPATH=pkg)
    b = run([EXAMPLE, smol_path, "-n", "16", "--temp", "0.8", "--seed", "3"], PYTHONPATH=pkg)
    assert a.returncode == 0 and a.stdout == b.stdout
    bad = run([EXAMPLE, "/nonexistent.gguf"], PYTHONPATH=pkg)
    assert bad.returncode == 1 and "rf_model_load" in bad.stderr


def test_pip_install(tmp_path, tiny_path):
    """pip installs the pure-Python package (nothing compiled; pip fetches setuptools for
    the build, as for any sdist), and the installed copy finds the library through
    ROCMFORGE_LIBRARY."""
    target = tmp_path / "site"
    # From a copy: setuptools writes build/ and *.egg-info/ next to the sources.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "bindings" / "python", src, ignore=shutil.ignore_patterns("tests", "__pycache__", "build", "*.egg-info"))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert pip.returncode == 0, pip.stderr
    code = f"import rocmforge as rf; m = rf.Model({str(tiny_path)!r}); print(rf.__file__, m.info.architecture)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(target)), cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(target)) and out.stdout.strip().endswith("llama")
