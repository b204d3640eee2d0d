"""The bad-input catalog behind the README's reliability table (benchmarks/bad_inputs.py): every case, across the
CLI and the Python API (flags, config files, model files, episode files, outputs a user owns, untrusted bundles,
runtime calls), is refused in one line within 10 s and leaves the user's files untouched."""
from __future__ import annotations

from collections import Counter

from nextframe.benchmarks import bad_inputs


def test_every_bad_input_is_refused_in_one_line(tmp_path):
    fx = bad_inputs.Fixtures(tmp_path)
    outcomes, not_refused = Counter(), []
    for cls, desc, kind, target, guard in bad_inputs.catalog(fx):
        outcome, line, _ = bad_inputs.run_case(kind, target, guard)
        outcomes[cls] += 1
        if outcome != "refused":
            not_refused.append((cls, desc, outcome, line))
    assert not_refused == []
    assert sum(outcomes.values()) >= 100 and len(outcomes) == 7
