"""Hostile files (issue 37): each attack is built as a tiny file at test time and must be refused with our error,
in one line, under 1 GB of peak memory, reading nothing outside its folder and overwriting nothing of the user's.

Calls run in the memory-capped worker of tests/hostile.py; see that module for how the peak is measured.
"""

from __future__ import annotations

from tests.hostile import PEAK_LIMIT


def test_the_worker_measures_each_calls_own_peak(hostile):
    """The measurement the rest of the file relies on: a call's peak is its own, not an earlier call's."""
    big = hostile.call("tests.hostile_probe:allocate", 400 * 2**20)
    small = hostile.call("tests.hostile_probe:allocate", 1)
    assert big.error_type is None and small.error_type is None
    assert big.peak_bytes > 400 * 2**20 > small.peak_bytes
    assert small.peak_bytes < PEAK_LIMIT


def test_the_worker_reports_our_errors_by_class(hostile):
    outcome = hostile.call("image_tokenizer.cli:main", ["info", "/nonexistent/folder/for/sure"])
    assert outcome.result == 2 and outcome.error_type is None
    assert "error" in outcome.stderr and outcome.stderr.count("\n") == 1
