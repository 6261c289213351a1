"""benchmarks/speed.py runs its signature race and one size on little data (no timing asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
ECBPLUS = ROOT.parent / "shared" / "data" / "ecbplus" / "ecbplus.jsonl"


@pytest.fixture(scope="module")
def speed() -> ModuleType:
    """benchmarks/speed.py as a module (benchmarks/ is not a package)."""
    if not ECBPLUS.is_file():
        pytest.skip(f"shared data not found at {ECBPLUS}")
    spec = importlib.util.spec_from_file_location("speed_bench", ROOT / "benchmarks/speed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_signature_race_times_every_contender(speed):
    rates = dict(speed.signature_race(40, 1))
    expected = {"datasketch update loop", "datasketch MinHash.bulk", "dedup, 1 process"}
    assert expected <= set(rates)
    assert all(rate > 0 for rate in rates.values())


def test_one_size_reports_every_stage_and_the_quality(speed):
    figures = speed.run_one(ECBPLUS, 1)  # ECB+ has the "event" field the corpus has
    assert figures["documents"] == 982
    assert set(figures["stages"]) == {*speed.STAGES, "write"}
    assert figures["candidates_per_doc"] > 0
    assert 0.8 < figures["bcubed_f1"] <= 1.0  # README: 0.859 on ECB+ at the default
