"""The load a command ran under, so that a comparison timed on a busy machine says so.

A ``LoadMeter`` samples, at the start, every few seconds while the runs train and at the
end: the 1-minute load average (``os.getloadavg``), the CPU time the whole machine spent
busy (``/proc/stat``, Linux) and this process's own CPU time. From them ``Load`` gives
the cores other processes kept busy on average, and, from the runs' histories, how many
CPU seconds training got per second of its wall time (below 1: it waited for a core).
The machine counts as busy when other processes used ``BUSY_CORES`` or more on average,
or training got less than ``BUSY_CPU_PER_WALL`` CPU seconds per second; without
/proc/stat a load average of ``BUSY_LOAD`` or more at the start stands in for the other
processes.
Nothing here imports numba or matplotlib.
"""

import math
import os
import time
from typing import NamedTuple

BUSY_CORES = 0.25
BUSY_CPU_PER_WALL = 0.8
BUSY_LOAD = 1.0  # without /proc/stat: the load average at the start (it includes ours)
PROC_STAT = "/proc/stat"


def machine_busy_seconds(path=PROC_STAT):
    """Seconds all cores together spent busy since boot (not idle, not waiting for I/O),
    or None where the file is missing."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """This process's CPU seconds and its ended children's (compare's workers, once the
    parent has waited for them)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Sample(NamedTuple):
    wall: float
    load_average: float
    busy: float  # machine_busy_seconds(), or None
    own: float   # own_cpu_seconds()


def take_sample(clock=time.monotonic):
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan
    return Sample(clock(), load, machine_busy_seconds(), own_cpu_seconds())


class Load(NamedTuple):
    """What the meter saw (NaN where unknown)."""

    cores: int
    load_start: float
    load_max: float
    load_end: float
    other_cores: float   # cores other processes kept busy, on average
    cpu_per_wall: float  # training's CPU seconds per wall second (all runs)
    busy: bool

    def text(self):
        """One line: ``load average 0.4 at the start, up to 0.9, 0.7 at the end (2 cores);
        other processes used 0.05 cores; training got 0.98 CPU s per s``."""
        parts = [f"load average {self.load_start:.1f} at the start, up to {self.load_max:.1f}"
                 f", {self.load_end:.1f} at the end ({self.cores} cores)"]
        if math.isfinite(self.other_cores):
            parts.append(f"other processes used {self.other_cores:.2f} cores on average")
        if math.isfinite(self.cpu_per_wall):
            parts.append(f"training got {self.cpu_per_wall:.2f} CPU s per s of its wall time")
        return "; ".join(parts)


class LoadMeter:
    """Samples the machine's load during a command (see the module docstring)."""

    def __init__(self, every=5.0, clock=time.monotonic, sample=None):
        self.every, self.clock = every, clock
        self._take = sample or (lambda: take_sample(clock))
        self.samples = [self._take()]

    def sample(self, force=False):
        """A sample, if ``every`` seconds passed since the last one (or ``force``)."""
        if force or self.clock() - self.samples[-1].wall >= self.every:
            self.samples.append(self._take())

    def result(self, histories, cores=None):
        """The Load of the samples so far and of the runs' ``histories`` (their last
        records' cpu_time and wall_time)."""
        self.sample(force=True)
        first, last = self.samples[0], self.samples[-1]
        cores = cores or os.cpu_count() or 1
        other = math.nan
        if first.busy is not None and last.busy is not None and last.wall > first.wall:
            other = max(0.0, (last.busy - first.busy) - (last.own - first.own)) / (
                last.wall - first.wall)
        cpu = sum(_last(h, "cpu_time") for h in histories)
        wall = sum(_last(h, "wall_time") for h in histories)
        ratio = cpu / wall if wall > 0 and math.isfinite(cpu) else math.nan
        loads = [s.load_average for s in self.samples]
        busy = (other >= BUSY_CORES if math.isfinite(other)
                else loads[0] >= BUSY_LOAD) or ratio < BUSY_CPU_PER_WALL
        return Load(cores, loads[0], max(loads), loads[-1], other, ratio, bool(busy))


def _last(history, column):
    return float(history.records[-1].get(column, math.nan)) if history.records else 0.0
