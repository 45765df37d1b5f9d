"""Who reaches the target accuracy first, and by how much: ``fastopt compare``'s verdict.

``crossing(history, target)`` interpolates the training seconds and steps at which a run
first reaches the target test accuracy, linearly between the two evaluations around the
first crossing. ``decide(contestants)`` ranks the contestants (optimizers, or optimizer x
batch size) by seconds and by steps over their seeds: the winner reaches the target on
the most seeds, then in the least mean time (steps). Every other contestant gets its
margin (ratio and difference of the means) and is *separable* from the winner when the
ranges of their seeds' values (min..max) do not overlap; a seed that never reached the
target counts as later than any that did. Across batch sizes ``decide(..., metrics=
METRICS + (EPOCHS,))`` ranks by epochs too (the crossing's ``epochs``, interpolated like
its steps). Nothing here imports numba or matplotlib.
"""

import math
from typing import NamedTuple

METRICS = (("seconds", "training time", "s"), ("steps", "steps", "steps"))
#: the third metric where the contestants differ in batch size: passes over the training
#: set (steps are not comparable then: one full-batch step sees every sample)
EPOCHS = ("epochs", "epochs", "epochs")


class Crossing(NamedTuple):
    """Where one run first reached the target: interpolated seconds and steps, and the
    gap between the two evaluations around it relative to the steps (the resolution)."""

    seconds: float
    steps: float
    resolution: float
    epochs: float = math.nan  # passes over the training set (the history's epoch column)


def crossing(history, target, clock="wall_time"):
    """The run's first crossing of ``target`` test accuracy, or None if it never got there.

    Between the last evaluation below the target (a0 at step s0, time t0) and the first at
    or above it (a1, s1, t1): fraction f = (target - a0) / (a1 - a0) of the way, steps
    s0 + f (s1 - s0), seconds t0 + f (t1 - t0), epochs likewise. Records with a non-finite test loss (a
    diverged run's last) are left out; an untrained network already at the target gives 0.
    ``clock``: the history column that times the run (``fastopt compare``: cpu_time).
    """
    before = None
    for r in history.records:
        if not math.isfinite(r["test_loss"]):
            continue
        if r["test_accuracy"] >= target:
            if before is None:
                return Crossing(float(r[clock]), float(r["step"]), 0.0,
                                float(r.get("epoch", math.nan)))
            a0, a1 = before["test_accuracy"], r["test_accuracy"]
            f = (target - a0) / (a1 - a0)
            steps = before["step"] + f * (r["step"] - before["step"])
            seconds = before[clock] + f * (r[clock] - before[clock])
            gap = (r["step"] - before["step"]) / steps if steps > 0 else 0.0
            e0, e1 = before.get("epoch", math.nan), r.get("epoch", math.nan)
            return Crossing(seconds, steps, gap, e0 + f * (e1 - e0))
        before = r
    return None


class Standing(NamedTuple):
    """One contestant on one metric: its seeds' values (inf: never reached), their mean
    over the seeds that reached, min and max, and its margin to the winner."""

    label: str
    values: tuple
    reached: int
    mean: float
    low: float
    high: float
    ratio: float = math.nan       # mean / winner's mean
    difference: float = math.nan  # mean - winner's mean
    separable: bool = False       # seed ranges do not overlap the winner's


def standing(label, values):
    values = tuple(math.inf if v is None or not math.isfinite(v) else float(v)
                   for v in values)
    finite = [v for v in values if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    return Standing(label, values, len(finite), mean, min(values, default=math.inf),
                    max(values, default=math.inf))


def rank(entries):
    """Standings best first (most seeds reaching, then lowest mean); margins filled in
    against the first. With nobody reaching, the order is the given one, no margins."""
    entries = sorted(entries, key=lambda e: (-e.reached, e.mean if e.reached else 0.0))
    if not entries or entries[0].reached == 0:
        return entries
    w = entries[0]
    out = [w]
    for e in entries[1:]:
        separable = e.low > w.high  # every seed of e later than every seed of the winner
        if e.reached:
            e = e._replace(ratio=e.mean / w.mean if w.mean > 0 else math.inf,
                           difference=e.mean - w.mean)
        out.append(e._replace(separable=separable))
    return out


class Verdict(NamedTuple):
    target: float
    seeds: int
    rankings: dict  # metric name ("seconds", "steps"[, "epochs"]) -> [Standing], best first
    metrics: tuple = METRICS  # (name, words, unit) of each ranking, in order


def decide(contestants, target, metrics=METRICS):
    """``contestants``: {label: [Crossing or None per seed]}; returns the Verdict, ranked on
    ``metrics`` (``METRICS``, or ``METRICS + (EPOCHS,)`` across batch sizes)."""
    rankings = {}
    for metric, _, _ in metrics:
        rankings[metric] = rank([
            standing(label, [None if c is None else getattr(c, metric) for c in crossings])
            for label, crossings in contestants.items()])
    seeds = max((len(c) for c in contestants.values()), default=0)
    return Verdict(target, seeds, rankings, tuple(metrics))


def _number(value, unit):
    return f"{value:,.0f}" if unit == "steps" else f"{value:.2f}"


def _amount(value, unit):
    return f"{_number(value, unit)} {unit}"


def _spread(e, unit):
    if e.reached < len(e.values):
        return f"{e.reached}/{len(e.values)} seeds reached it"
    if len(e.values) > 1:
        return f"seeds {_number(e.low, unit)}..{_amount(e.high, unit)}"
    return ""


def headline(verdict):
    """The verdict in one line (verdict.txt's first)."""
    pct = f"{100 * verdict.target:g}%"
    parts = []
    for metric, words, unit in verdict.metrics:
        ranking = verdict.rankings[metric]
        if not ranking or ranking[0].reached == 0:
            return (f"no run reached {pct} test accuracy: no winner (train longer with "
                    "--seconds or --epochs, or lower --target-accuracy)")
        w, others = ranking[0], ranking[1:]
        close = [e.label for e in others if not e.separable]
        text = f"by {words} {w.label} reaches {pct} first ({_amount(w.mean, unit)})"
        if close:
            text += f", not separable from {', '.join(close)}"
        elif others:
            text += (", ahead of every other beyond the spread over seeds"
                     if verdict.seeds > 1 else ", ahead of every other (one seed: no spread)")
        parts.append(text)
    return "; ".join(parts)


def margin_text(e, w, unit):
    """How one contestant stands against the winner ``w``."""
    spread = _spread(e, unit)
    spread = f", {spread}" if spread else ""
    if e is w:
        return f"first ({_amount(e.mean, unit)}{spread})"
    if e.reached == 0:
        return "did not reach the target" + ("" if e.separable else ", not separable")
    sign = "+" if e.difference >= 0 else ""
    return (f"{e.ratio:.2f}x ({sign}{_amount(e.difference, unit)}){spread}, "
            + ("separable" if e.separable else "not separable"))


def lines(verdict):
    """verdict.txt: the headline, then each contestant's margin on both metrics."""
    out = [headline(verdict)]
    for metric, words, unit in verdict.metrics:
        ranking = verdict.rankings[metric]
        if not ranking or ranking[0].reached == 0:
            continue
        out.append(f"by {words} (mean over the seeds that reached the target; separable: "
                   "the seeds' ranges do not overlap the winner's):")
        for e in ranking:
            out.append(f"  {e.label}: {margin_text(e, ranking[0], unit)}")
    return out


def cell(verdict, label):
    """The summary.csv ``verdict`` cell of one contestant: ``time: ...; steps: ...``
    (``; epochs: ...`` when ranked on epochs too)."""
    parts = []
    for metric, words, unit in verdict.metrics:
        ranking = verdict.rankings[metric]
        if not ranking or ranking[0].reached == 0:
            return "no winner: no run reached the target"
        e = next(e for e in ranking if e.label == label)
        parts.append(f"{'time' if metric == 'seconds' else metric}: "
                     + margin_text(e, ranking[0], unit))
    return "; ".join(parts)
