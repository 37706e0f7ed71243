"""The seeded fuzzer (tests/fuzz.py) on every run: a few hundred cases, every outcome a success or one of our
errors, none past the time limit. IMAGE_TOKENIZER_FUZZ_CASES=10000 runs the long mode."""

import os

from tests.fuzz import run


def test_fuzzed_inputs_give_results_or_our_errors_never_other_exceptions():
    cases = int(os.environ.get("IMAGE_TOKENIZER_FUZZ_CASES", "300"))
    result = run(cases, seed=int(os.environ.get("IMAGE_TOKENIZER_FUZZ_SEED", "0")))
    assert result["unexpected"] == [], "\n".join(result["unexpected"])
    assert sum(result["counts"].values()) == cases
    exercised = {name.split(":")[0] for name in result["counts"]}
    assert exercised == {"api", "cli", "folder"} and result["counts"].get("api: ok", 0) > 0
