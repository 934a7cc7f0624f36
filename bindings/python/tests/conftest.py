"""Fixtures: the test models and llama.cpp's reference data (../shared/reference).

A missing model or reference file skips its tests when run by hand and fails them under CI
(CI=true), as the Rust tests do. tests/python.rs runs this suite from `cargo test` with
ROCMFORGE_LIBRARY set to the library that build made.
"""

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = Path(os.environ.get("RF_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
MODELS = Path(os.environ.get("RF_MODELS_DIR", ROOT / "models"))
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = "gemma-3-270m-q4_k_m.gguf"


def require(path: Path, hint: str) -> Path:
    if path.exists():
        return path
    if os.environ.get("CI") in ("true", "1"):
        pytest.fail(f"{path} is missing under CI ({hint})")
    pytest.skip(f"{path} is missing ({hint})")


def jsonl(path: Path) -> list:
    return [json.loads(line) for line in require(path, "../shared/reference").read_text().splitlines()]


@pytest.fixture(scope="session")
def smol_path() -> Path:
    return require(MODELS / SMOLLM2, "scripts/fetch-models.sh")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return require(MODELS / GEMMA3, "scripts/fetch-models.sh")


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    """The zoo's tiny random-weight llama: fast enough for every error path."""
    return require(REFERENCE / "zoo" / "llama.F32.gguf", "../shared/reference/zoo")


@pytest.fixture(scope="session")
def smol(smol_path):
    import rocmforge as rf

    with rf.Model(smol_path) as m:
        yield m


@pytest.fixture(scope="session")
def tiny(tiny_path):
    import rocmforge as rf

    with rf.Model(tiny_path) as m:
        yield m


@pytest.fixture(scope="session")
def smol_reference() -> list:
    return jsonl(REFERENCE / "smollm2" / "logits.jsonl")
