"""The progress lines' "of ~N": a phase measured against the reference counts both sides."""

import dataclasses

from benchmarks.load import profiles
from benchmarks.load.estimate import expected_s


def test_a_duet_is_expected_to_take_both_sides_time() -> None:
    for scenario in ("load_performance", "end_to_end_latency"):
        p = profiles.params(scenario, "quick")
        alone = expected_s(scenario, dataclasses.replace(p, pairs=0))
        duet = expected_s(scenario, p)
        assert alone is not None and duet is not None
        # each side warms up, opens its sessions and measures the whole duration
        assert 1.8 * alone < duet < 2.3 * alone, (scenario, alone, duet)
