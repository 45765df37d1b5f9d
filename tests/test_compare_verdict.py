"""compare's numbers from synthetic histories: interpolated crossings, the verdict, the
log-spaced evaluation steps and the load meter. No training."""

import math

import pytest

from fastopt.experiments import load, training, verdict
from fastopt.train import History


def history(points, every=100, dt=0.1, diverge_at=None):
    """A History whose test accuracy is ``points[i]`` at step i * every, time i * dt."""
    records = [dict(step=i * every, epoch=0.0, wall_time=i * dt, cpu_time=i * dt,
                    train_loss=1.0, test_loss=1.0 - a, test_accuracy=a, lr=0.1)
               for i, a in enumerate(points)]
    if diverge_at is not None:
        records[diverge_at]["test_loss"] = math.nan
    return History(records)


# ---------------------------------------------------------------------------------------
# crossing: linear interpolation between the evaluations around the first crossing


def test_crossing_is_interpolated_between_the_two_evaluations_around_it():
    c = verdict.crossing(history([0.1, 0.8, 0.9, 0.98, 0.95]), 0.94)
    # between step 200 (0.90, 0.2 s) and step 300 (0.98, 0.3 s): half way
    assert c.steps == pytest.approx(250.0) and c.seconds == pytest.approx(0.25)
    assert c.resolution == pytest.approx(100 / 250)
    exact = verdict.crossing(history([0.1, 0.5, 0.97]), 0.97)
    assert exact.steps == 200 and exact.seconds == pytest.approx(0.2)


def test_crossing_at_the_start_never_and_after_divergence():
    assert verdict.crossing(history([0.99, 0.5]), 0.97) == (0.0, 0.0, 0.0, 0.0)
    assert verdict.crossing(history([0.1, 0.5, 0.96]), 0.97) is None
    # the diverged record (NaN loss) does not count, even with a high accuracy
    assert verdict.crossing(history([0.1, 0.5, 0.99], diverge_at=2), 0.97) is None
    assert verdict.crossing(History([]), 0.5) is None


# ---------------------------------------------------------------------------------------
# the verdict


def crossings(*values):
    """Crossings at the given steps (seconds = steps / 1000); None: never reached."""
    return [None if v is None else verdict.Crossing(v / 1000, float(v), 0.01) for v in values]


def test_clear_winner_and_margins():
    v = verdict.decide({"sgd": crossings(3000, 3200, 3100),
                        "adam": crossings(1000, 1100, 1050),
                        "rmsprop": crossings(1500, 1600, 1550)}, 0.97)
    time = v.rankings["seconds"]
    assert [e.label for e in time] == ["adam", "rmsprop", "sgd"]
    assert time[0].mean == pytest.approx(1.05) and time[0].low == 1.0 and time[0].high == 1.1
    assert time[1].ratio == pytest.approx(1.55 / 1.05)
    assert time[1].difference == pytest.approx(0.5) and time[1].separable
    assert time[2].separable
    head = verdict.headline(v)
    assert head.startswith("by training time adam reaches 97% first (1.05 s)")
    assert "ahead of every other beyond the spread over seeds" in head
    assert "by steps adam reaches 97% first (1,050 steps)" in head
    text = "\n".join(verdict.lines(v))
    assert "rmsprop: 1.48x (+0.50 s), seeds 1.50..1.60 s, separable" in text
    assert verdict.cell(v, "adam").startswith("time: first (1.05 s, seeds 1.00..1.10 s)")
    assert verdict.cell(v, "sgd").endswith("separable") and "2.95x" in verdict.cell(v, "sgd")


def test_tie_within_the_spread_is_not_separable():
    v = verdict.decide({"adam": crossings(1000, 1400, 1200),
                        "adamw": crossings(1100, 1300, 1250),
                        "sgd": crossings(2000, 2100, 2200)}, 0.97)
    time = {e.label: e for e in v.rankings["seconds"]}
    assert v.rankings["seconds"][0].label == "adam"  # lowest mean: 1.2 s vs 1.217 s
    assert not time["adamw"].separable and time["sgd"].separable
    assert "not separable from adamw" in verdict.headline(v)
    assert verdict.cell(v, "adamw").startswith("time: 1.01x (+0.02 s), seeds 1.10..1.30 s, "
                                               "not separable")


def test_nobody_reaches_the_target():
    v = verdict.decide({"sgd": crossings(None, None), "adam": crossings(None, None)}, 0.99)
    assert verdict.headline(v).startswith("no run reached 99% test accuracy: no winner")
    assert verdict.lines(v) == [verdict.headline(v)]
    assert verdict.cell(v, "sgd") == "no winner: no run reached the target"


def test_some_seeds_never_reach_the_target():
    # adam is faster on the seeds that reach, but one seed never does: momentum (all
    # seeds) wins; adam cannot be separated from it (its missing seed is unbounded)
    v = verdict.decide({"adam": crossings(800, None, 900),
                        "momentum": crossings(1500, 1600, 1400),
                        "sgd": crossings(None, None, None)}, 0.97)
    time = v.rankings["seconds"]
    assert [e.label for e in time] == ["momentum", "adam", "sgd"]
    adam, sgd = time[1], time[2]
    assert adam.reached == 2 and adam.high == math.inf and not adam.separable
    assert adam.ratio == pytest.approx(0.85 / 1.5)  # faster where it reached
    assert sgd.reached == 0 and sgd.separable and math.isnan(sgd.ratio)
    text = "\n".join(verdict.lines(v))
    assert "adam: 0.57x (-0.65 s), 2/3 seeds reached it, not separable" in text
    assert "sgd: did not reach the target" in text
    # a winner that misses a seed cannot be separated from anyone
    v = verdict.decide({"a": crossings(100, None), "b": crossings(None, None)}, 0.9)
    assert not v.rankings["steps"][1].separable


def test_one_seed_has_no_spread():
    v = verdict.decide({"sgd": crossings(3000), "adam": crossings(1000)}, 0.97)
    assert "one seed: no spread" in verdict.headline(v)
    assert v.rankings["steps"][1].separable  # single values that differ


# ---------------------------------------------------------------------------------------
# log-spaced evaluations


def evaluation_steps(accuracy_at, target=0.97, last=5000):
    """The steps LogSpacedEvaluations picks for a run whose accuracy at step s is
    ``accuracy_at(s)``."""
    policy = training.LogSpacedEvaluations(target)
    steps = [0]
    while steps[-1] < last:
        s = steps[-1]
        steps.append(policy(dict(step=s, test_accuracy=accuracy_at(s))))
    return steps


def test_log_spaced_from_the_first_step_and_fine_near_the_target():
    def acc(s):  # error 0.9 at step 0, falling as s^-0.6: 97% near step 400
        return 1.0 - 0.9 * (1 + s) ** -0.6

    steps = evaluation_steps(acc)
    assert steps[:8] == [0, 1, 2, 4, 8, 16, 32, 64]
    ratios = [b / a for a, b in zip(steps[1:], steps[2:])]
    assert all(r <= 2.0 for r in ratios) and min(ratios) < 1.06
    cross = next(s for s in steps if acc(s) >= 0.97)
    before = steps[steps.index(cross) - 1]
    assert (cross - before) / cross <= 0.05  # the crossing is bracketed to 5%
    assert len(steps) < 45  # cheap: ~0.03 s per MNIST evaluation
    # after the target is reached, coarse again
    tail = steps[steps.index(cross):]
    assert all(b >= 1.4 * a for a, b in zip(tail[1:], tail[2:]))


def test_log_spacing_depends_on_the_records_only():
    def acc(s):
        return min(0.99, 0.1 + s / 1000)

    assert evaluation_steps(acc) == evaluation_steps(acc)


# ---------------------------------------------------------------------------------------
# the load meter


class FakeMachine:
    """Samples of a machine where others use ``others`` cores and we use ``ours``."""

    def __init__(self, others, ours, loads, proc=True):
        self.t, self.others, self.ours, self.loads, self.proc = 0.0, others, ours, loads, proc

    def clock(self):
        return self.t

    def sample(self):
        busy = (self.others + self.ours) * self.t if self.proc else None
        load_average = self.loads[min(int(self.t // 5), len(self.loads) - 1)]
        return load.Sample(self.t, load_average, busy, self.ours * self.t)


def run_meter(machine, seconds=20.0, cpu=10.0, wall=10.0):
    meter = load.LoadMeter(every=5.0, clock=machine.clock, sample=machine.sample)
    while machine.t < seconds:
        machine.t += 1.0
        meter.sample()
    h = history([0.1, 0.5])
    h.records[-1].update(cpu_time=cpu, wall_time=wall)
    return meter, meter.result([h], cores=2)


def test_quiet_machine():
    meter, result = run_meter(FakeMachine(0.02, 1.0, [0.3, 1.0, 1.1, 1.2, 1.0]))
    assert len(meter.samples) == 6  # start, every 5 s, end
    assert result.other_cores == pytest.approx(0.02) and not result.busy
    assert (result.load_start, result.load_max, result.load_end) == (0.3, 1.2, 1.0)
    assert result.cpu_per_wall == pytest.approx(1.0)
    assert "other processes used 0.02 cores" in result.text()


def test_busy_machine_by_other_processes_or_by_lost_cpu():
    _, result = run_meter(FakeMachine(1.6, 0.4, [3.5, 4.0]), cpu=4.0)
    assert result.busy and result.other_cores == pytest.approx(1.6)
    assert result.cpu_per_wall == pytest.approx(0.4)
    assert "training got 0.40 CPU s per s" in result.text()
    _, result = run_meter(FakeMachine(0.0, 0.5, [0.1]), cpu=5.0)  # others hidden, cpu lost
    assert result.busy
    # without /proc/stat: the load average at the start decides
    _, result = run_meter(FakeMachine(0.0, 1.0, [2.5], proc=False))
    assert result.busy and math.isnan(result.other_cores)
    _, result = run_meter(FakeMachine(0.0, 1.0, [0.2], proc=False))
    assert not result.busy


def test_real_sample_reads_this_machine():
    s = load.take_sample()
    assert s.own > 0 and (s.busy is None or s.busy > 0)
    assert load.machine_busy_seconds("/nonexistent/stat") is None
