"""The judging policy without I/O: evidence in, decision out, table-driven, no fakes.

Each case builds the evidence a judgement sees (the branch's history and run statuses,
the results of the commit and its measured neighbours, limits, baselines, asv's steps,
confirmations, open alerts) and checks the decision: what is alerted, bisected,
confirmed, recovered, said."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scheduler.policy import Evidence, OpenAlert, RunInfo, decide
from scheduler.policy.criteria import Baseline, Baselines, Limit
from scheduler.policy.thresholds import JudgeConfig
from scheduler.results import Measurement, ResultFile, StepRegression

H = [f"{i:x}" * 40 for i in range(1, 8)]  # seven commits, oldest first: 111.., 222.., ...
LAT = "suite.Suite.track_latency"  # a wall-clock series: confirmed before an alert
INS = "instructions.Instructions.track_instructions_per_message(path='echo')"
RAW = "load_performance.LoadPerformance.track_latency_p95(clients=10)"  # limits only
JUDGE = JudgeConfig(default_threshold=0.05, alpha=0.01, min_samples=5)


def meas(bench: str, value: float, *, version: str = "1", n: int = 10) -> Measurement:
    name, _, rest = bench.partition("(")
    params: tuple[tuple[str, str], ...] = ()
    if rest:
        key, _, val = rest.rstrip(")").partition("=")
        params = ((key, val),)
    samples = tuple(value * (1 + 0.001 * (i - n / 2)) for i in range(n))
    return Measurement(name, params, value, samples, (value * 0.999, value * 1.001), "ms",
                       version)


def result(commit: str, **values: float) -> ResultFile:
    series = {"lat": LAT, "ins": INS, "raw": RAW}
    return ResultFile(Path("r.json"), commit, "box-quick", 0,
                      tuple(meas(series[k], v) for k, v in values.items()))


def evidence(commit: str, results: dict[str, ResultFile], *, kind: str = "poll",
             status: dict[str, str] | None = None, premerge: bool = True,
             baselines: Baselines | None = None, **kw: object) -> Evidence:
    st = status if status is not None else {c: "done" for c in results}
    ev = Evidence(run=RunInfo(commit, "main", "quick", kind), machine="box-quick",
                  machine_name="box", premerge=premerge, history=tuple(H), status=st,
                  results=results, baselines=baselines or Baselines(Path("."), (), (), ()),
                  judge=JUDGE)
    return dataclasses.replace(ev, **kw)  # type: ignore[arg-type]


def test_a_wall_clock_regression_waits_for_its_confirmation() -> None:
    d = decide(evidence(H[1], {H[0]: result(H[0], lat=1.0), H[1]: result(H[1], lat=1.5)}))
    assert not d.alerts and [f.bench for f in d.findings] == [LAT]
    assert d.confirmation is not None
    assert (d.confirmation.bad, d.confirmation.base) == (H[1], H[0])
    assert d.confirmation.series == {LAT}


def test_a_deterministic_regression_is_alerted_at_once() -> None:
    judge = dataclasses.replace(JUDGE, deterministic=r"^instructions\.")
    d = decide(evidence(H[1], {H[0]: result(H[0], ins=150_000.0, lat=1.0),
                               H[1]: result(H[1], ins=153_000.0, lat=1.0)}, judge=judge))
    assert [f.bench for f in d.alerts] == [INS] and d.confirmation is None
    assert "deterministic" in d.alerts[0].crossed  # its own default threshold, 1.5 %


def test_a_confirmed_commit_is_alerted() -> None:
    d = decide(evidence(H[1], {H[0]: result(H[0], lat=1.0), H[1]: result(H[1], lat=1.5)},
                        kind="confirm", confirmed=frozenset({H[1]}),
                        held={H[1]: frozenset({LAT})}))
    assert [(f.bench, f.good, f.bad) for f in d.alerts] == [(LAT, H[0], H[1])]


@pytest.mark.parametrize(("held", "alerted", "note"), [
    ({LAT}, [LAT], ""),
    ({"other.series"}, [], "only in the re-measurement"),
])
def test_a_confirmation_alerts_only_what_both_measurements_saw(
        held: set[str], alerted: list[str], note: str) -> None:
    d = decide(evidence(H[1], {H[0]: result(H[0], lat=1.0), H[1]: result(H[1], lat=1.5)},
                        kind="confirm", confirmed=frozenset({H[1]}),
                        held={H[1]: frozenset(held)}))
    assert [f.bench for f in d.alerts] == alerted
    assert note in " ".join(d.notes)


def test_a_confirmation_that_finds_nothing_says_so() -> None:
    d = decide(evidence(H[1], {H[0]: result(H[0], lat=1.0), H[1]: result(H[1], lat=1.0)},
                        kind="confirm", confirmed=frozenset({H[1]})))
    assert not d.alerts and any("not confirmed" in n for n in d.notes)


def test_a_limits_only_series_is_judged_against_its_limit_only() -> None:
    limits = Baselines(Path("."), (Limit(r"track_latency_p95\(clients=10\)$", 100.0),), (), ())
    quiet = decide(evidence(H[1], {H[0]: result(H[0], raw=10.0), H[1]: result(H[1], raw=40.0)},
                            baselines=limits))
    assert not quiet.findings
    over = decide(evidence(H[1], {H[0]: result(H[0], raw=10.0),
                                  H[1]: result(H[1], raw=140.0)}, baselines=limits))
    assert [(f.kind, f.bench) for f in over.alerts] == [("limit", RAW)]


@pytest.mark.parametrize(("status", "bisect", "crossed"), [
    # a gap with unmeasured commits: bisect at the middle one, alert nothing yet
    ({H[0]: "done", H[1]: "queued", H[2]: "", H[3]: "done"}, H[2], None),
    # every commit in the gap failed to build: alert the range
    ({H[0]: "done", H[1]: "failed", H[2]: "failed", H[3]: "done"}, None,
     "2 commit(s) in between could not be measured"),
])
def test_bisection_names_the_first_bad_commit(status: dict[str, str], bisect: str | None,
                                              crossed: str | None) -> None:
    ev = evidence(H[3], {H[0]: result(H[0], lat=1.0), H[3]: result(H[3], lat=1.5)},
                  status=status, confirmed=frozenset({H[3]}))
    d = decide(ev)
    assert [b.commit for b in d.bisect] == ([bisect] if bisect else [])
    if crossed:
        assert len(d.alerts) == 1 and crossed in d.alerts[0].crossed
    else:
        assert not d.findings


def test_a_nightly_gap_is_judged_against_the_previous_nightly() -> None:
    d = decide(evidence(H[3], {H[0]: result(H[0], lat=1.0), H[3]: result(H[3], lat=1.5)},
                        status={H[0]: "done", H[3]: "done"}, premerge=False,
                        confirmed=frozenset({H[3]})))
    assert not d.bisect and "previous quick run, 3 commits earlier" in d.alerts[0].crossed


def test_two_suspects_are_confirmed_one_at_a_time_the_earliest_first() -> None:
    # H[1] is slower than H[0], H[2] (measured, newer) slower again than H[1]
    ev = evidence(H[1], {H[0]: result(H[0], lat=1.0), H[1]: result(H[1], lat=1.5),
                         H[2]: result(H[2], lat=2.5)})
    d = decide(ev)
    assert d.confirmation is not None and d.confirmation.bad == H[1]
    assert any(f"judged again after {H[1][:8]} is confirmed" in n for n in d.notes)


def test_a_changed_benchmark_version_is_not_a_regression() -> None:
    a = ResultFile(Path("a"), H[0], "box-quick", 0, (meas(LAT, 1.0, version="1"),))
    b = ResultFile(Path("b"), H[1], "box-quick", 0, (meas(LAT, 2.0, version="2"),))
    assert not decide(evidence(H[1], {H[0]: a, H[1]: b})).findings


def test_limits_and_baselines_speak_only_for_the_newest_commit() -> None:
    limits = Baselines(Path("."), (Limit("track_latency$", 1.2),), (), ())
    results = {H[0]: result(H[0], lat=1.5), H[1]: result(H[1], lat=1.5)}
    older = decide(evidence(H[0], results, baselines=limits))
    newest = decide(evidence(H[1], results, baselines=limits))
    assert not any(f.kind == "limit" for f in older.findings)
    assert [f.kind for f in newest.alerts] == ["limit"]


def test_a_blessed_baseline_is_compared_with_its_threshold() -> None:
    blessed = Baselines(Path("."), (), (Baseline(LAT, "box", "quick", 1.0, H[0]),), ())
    d = decide(evidence(H[1], {H[1]: result(H[1], lat=1.3)}, baselines=blessed))
    assert [(f.kind, f.good) for f in d.alerts] == [("baseline", H[0])]


@pytest.mark.parametrize(("step_series", "gap_status", "found"), [
    (LAT, "done", True),  # a step the pairwise test missed (no samples to test)
    (RAW, "done", False),  # a limits-only series: not from asv's steps either
    (LAT, "queued", False),  # unmeasured commits hide where the step started
])
def test_asv_steps_add_what_the_pairwise_test_missed(step_series: str, gap_status: str,
                                                     found: bool) -> None:
    name, _, rest = step_series.partition("(")
    params = ((rest.split("=")[0], rest.split("=")[1].rstrip(")")),) if rest else ()
    step = StepRegression(name, params, "box-quick", H[0], H[2], 1.0, 1.5)
    single = {H[0]: result(H[0], lat=1.0, raw=1.0), H[2]: result(H[2], lat=1.5, raw=1.5)}
    # one sample a side is "not tested", a 1 % rise is within threshold: no pairwise finding
    single[H[2]] = ResultFile(Path("x"), H[2], "box-quick", 0, tuple(
        dataclasses.replace(m, value=m.value * 1.01 if m.value else m.value, samples=())
        for m in single[H[0]].measurements))
    ev = evidence(H[2], single, status={H[0]: "done", H[1]: gap_status, H[2]: "done"},
                  steps=(step,), confirmed=frozenset({H[2]}))
    d = decide(ev)
    steps = [f for f in d.findings if f.asv_step]
    assert bool(steps) is found, d.findings


def test_recoveries_and_silent_closes() -> None:
    limits = Baselines(Path("."), (), (Baseline(LAT, "box", "quick", 1.0, "new" * 13 + "n"),),
                       ())
    alerts = (
        OpenAlert("history|lat", "history", LAT, H[0], 1.0),
        OpenAlert("limit|lat", "limit", LAT, H[0], 1.2),  # its limit is gone
        OpenAlert("baseline|lat", "baseline", LAT, H[0], 1.0, {"baseline_commit": "old"}),
        OpenAlert("here|lat", "history", LAT, H[1], 1.0),  # raised at this very commit
    )
    d = decide(evidence(H[1], {H[0]: result(H[0], lat=1.0), H[1]: result(H[1], lat=1.01)},
                        baselines=limits, open_alerts=alerts))
    assert [r.alert.key for r in d.recoveries] == ["history|lat"]
    assert d.close_silently == ["limit|lat", "baseline|lat"]
