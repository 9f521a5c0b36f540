"""The self-test's command line offers exactly the plants it has."""

from selftest.cli import PLANT_KINDS, build_parser
from selftest.evaluate import default_targets


def test_only_offers_every_planted_regression_and_nothing_else():
    assert sorted(PLANT_KINDS) == sorted(t.kind for t in default_targets())


def test_only_accepts_a_kind_and_repeats():
    args = build_parser().parse_args(["evaluate", "--only", "pause", "--only", "leak"])
    assert args.only == ["pause", "leak"]
