"""What every experiment command shares: its output folder, the record of its settings,
figures, progress bars and the common command-line options.

A run writes everything into one folder (``--out DIR``, by default a new timestamped folder
under ``runs/``) next to ``settings.json``, a machine-readable record of the exact settings
(command, every argument, versions, date, command line) from which the run can be repeated.
The record is written before the work starts and marked complete at the end, so an
interrupted run says so.

    out = runs.make_out_dir(args.out, "paths")          # refuses an existing *file*
    runs.write_settings(out, "paths", vars(args), argv)   # (resuming: read_settings, check_resume)
    ...
    runs.save_figure(fig, out, "paths", svg=args.svg)   # paths.png (+ paths.svg)
    runs.update_settings(out, status="complete")

Nothing here imports matplotlib or numba at module level.
"""

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from . import _checks

RUNS_ROOT = "runs"
SETTINGS_FILE = "settings.json"
TARGETS = ("cpu", "cuda")


# ---------------------------------------------------------------------------------------
# command-line options shared by the experiment commands


def add_common_arguments(parser, command, seed_help=None):
    """--out, --seed, --target, --svg and --no-progress, with the same meaning everywhere."""
    common = parser.add_argument_group("output and run options")
    common.add_argument("--out", metavar="DIR", default=None,
                        help=f"folder for the results (created if missing; default: a new "
                             f"folder {RUNS_ROOT}/{command}-YYYYMMDD-HHMMSS)")
    common.add_argument("--seed", type=int, default=0,
                        help=seed_help or "seed of every random draw (default 0); the same "
                                          "seed gives the same results")
    common.add_argument("--target", default="cpu", metavar="{cpu,cuda}",
                        help="where the kernels run (default cpu; cuda trains on an NVIDIA "
                             "GPU: compare, compare --textbook and sensitivity take it, "
                             "with a GPU or NUMBA_ENABLE_CUDASIM=1, and pip install "
                             "\"fastopt[cuda]\"; the other commands run on the CPU)")
    common.add_argument("--svg", action="store_true",
                        help="also write each figure as SVG next to the PNG")
    common.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are off anyway when stdout is not a "
                             "terminal)")


def check_common_arguments(args, gpu=None):
    """Checks of the shared options; raises ValueError naming the option. ``gpu``: see
    ``check_target``."""
    check_target(args.target, gpu)
    check_count("--seed", args.seed, low=0)
    check_out(args.out)


#: the commands that train on the GPU with --target cuda
CUDA_COMMANDS = ("compare", "compare --textbook", "sensitivity")


def check_target(target, gpu=None):
    """``--target``. ``gpu``: for a command that can train on the GPU, a function that
    returns None when CUDA kernels can launch here (a GPU, or Numba's simulator with
    NUMBA_ENABLE_CUDASIM=1), else what is missing (``fastopt.kernels.cuda.
    why_unavailable``); without it the command takes the CPU only. ValueError otherwise."""
    if target not in TARGETS:
        raise ValueError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if target == "cuda" and gpu is None:
        raise ValueError("--target cuda: the CUDA target is not available to this command "
                         f"(the commands that take it: {', '.join(CUDA_COMMANDS)}; from "
                         "Python: nn.MLP(..., target=\"cuda\") and optimizers on device "
                         "arrays); use --target cpu")
    if target == "cuda":
        missing = gpu()
        if missing is not None:
            for tail in ('; or use target="cpu"', '; use target="cpu"'):  # said below
                missing = missing.removesuffix(tail)
            raise ValueError(f"--target cuda: no usable GPU here: {missing}. Use --target "
                             "cpu (or, without a GPU, NUMBA_ENABLE_CUDASIM=1 runs the GPU "
                             "kernels in Numba's simulator: slow, for tests)")
    return target


def check_count(option, value, low=1):
    """An integer option >= ``low``; ValueError naming the option otherwise."""
    return _checks.count(option, value, low=low)


def check_positive(option, value):
    """A finite real number > 0; ValueError naming the option otherwise."""
    return _checks.positive(option, value)


def split_list(option, text, choices=None):
    """A comma-separated list option; with ``choices``, unknown names list the valid ones."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ValueError(f"{option} needs at least one name, got {text!r}")
    if choices is not None:
        for item in items:
            if item not in choices:
                raise ValueError(f"{option}: unknown name {item!r}; valid: "
                                 + ", ".join(choices))
    if len(set(items)) != len(items):
        raise ValueError(f"{option} lists a name twice: {text!r}")
    return items


def progress_enabled(no_progress):
    """Progress bars are shown only on a terminal, and never with --no-progress."""
    return not no_progress and sys.stdout.isatty()


def progress_mode(no_progress):
    """How a command shows its progress: "bar" (a tqdm bar, on a terminal), "lines" (one
    short line every ~10 s, when stdout is a pipe or a log file) or "off" (--no-progress)."""
    if no_progress:
        return "off"
    return "bar" if sys.stdout.isatty() else "lines"


class Progress:
    """Progress of a long command over ``total`` units (runs, trials, paths ...).

    ``mode`` "bar": a tqdm bar; "lines": a line on stdout every ``every`` seconds of wall
    time - which item, how far, time left - so that a log shows the run is alive; "off" (or
    False): nothing; True is "bar". The API is the part of tqdm's the commands use:
    ``update(n)``, ``set_postfix_str(text)``, ``write(text)``, ``close()``; iterating over
    ``Progress(iterable, ...)`` yields its items.
    """

    def __init__(self, iterable=None, *, total=None, initial=0, desc="", unit="it",
                 mode="bar", every=10.0, clock=None):
        import time

        self.iterable = iterable
        self.total = len(iterable) if total is None and iterable is not None else total
        self.desc, self.unit, self.every = desc, unit, every
        self.mode = {True: "bar", False: "off"}.get(mode, mode)
        if self.mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress mode must be 'bar', 'lines' or 'off', got {mode!r}")
        self.clock = clock or time.monotonic
        self.n, self.initial, self.postfix = initial, initial, ""
        self.start = self.last = self.clock()
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=initial, desc=desc, unit=unit)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n=1):
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and self.clock() - self.last >= self.every:
            self.last = self.clock()
            print(self.line(), flush=True)

    def set_postfix_str(self, text):
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def write(self, text):
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def line(self):
        """``desc: 5/21 runs (24%), adam b128 s1; 38 s so far, about 1 min 50 s left``."""
        elapsed = self.clock() - self.start
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        text = f"{self.desc}: {done} {self.unit}{pct}"
        if self.postfix:
            text += f", {self.postfix}"
        text += f"; {_duration(elapsed)} so far"
        if self.total and self.n > self.initial:
            rate = elapsed / (self.n - self.initial)
            text += f", about {_duration(rate * (self.total - self.n))} left"
        return text

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# ---------------------------------------------------------------------------------------
# the output folder and the settings record


def check_out(out):
    """Refuse an --out that cannot be a folder (an existing file, or a file on the way)."""
    if out is None:
        return None
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is an existing file; give a folder (it is created if "
                         "missing)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out {out}: {parent} is a file, so the folder cannot be "
                             "created there")
    return path


def make_out_dir(out, prefix, now=None):
    """Create and return the output folder.

    ``out`` None picks ``runs/<prefix>-YYYYMMDD-HHMMSS`` (with ``-2``, ``-3``, ... appended if
    that exists). An existing folder is reused (files of the same name are overwritten);
    an existing file raises ValueError before anything is created.
    """
    if out is not None:
        path = check_out(out)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
        return path
    while True:
        path = new_out_path(prefix, now)
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:  # made by another command in the same second
            continue


def new_out_path(prefix, now=None):
    """``runs/<prefix>-YYYYMMDD-HHMMSS`` (``-2``, ``-3`` ... if taken), not created: for a
    command that creates its folder itself once its arguments are checked."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(RUNS_ROOT) / f"{prefix}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def interrupted(out_dir):
    """After Ctrl-C: mark the run's settings.json as interrupted; returns the message."""
    if out_dir is None:
        return "interrupted"
    try:
        update_settings(out_dir, status="interrupted")
    except (OSError, ValueError):
        pass  # no record yet (or unreadable): the message still says where the files are
    return f"interrupted; what was written so far is in {out_dir}"


def versions():
    """Versions of fastopt and the libraries that decide its numbers (without importing numba)."""
    from . import __version__

    found = {"fastopt": __version__, "python": platform.python_version()}
    for dist in ("numpy", "numba", "llvmlite", "matplotlib"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return repr(value)


def write_settings(out_dir, command, arguments, argv=None, resolved=None):
    """Write ``settings.json`` in ``out_dir`` and return its path.

    ``arguments``: every argument value (a dict such as ``vars(args)``; callables and names
    starting with ``_`` are left out). ``argv``: the command's arguments (default
    ``sys.argv[1:]``), recorded as a list and as a shell command line. ``resolved``:
    settings the command derived from the arguments (learning rates picked per function,
    start points ...), so the record is complete without reading the code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    record = {
        "command": command,
        "arguments": {k: v for k, v in arguments.items()
                      if not k.startswith("_") and not callable(v)},
        "out_dir": str(out_dir),
        "command_line": shlex.join(["fastopt", *argv]),
        "argv": argv,
        "cwd": os.getcwd(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": versions(),
        "platform": platform.platform(),
        "status": "running",
    }
    if resolved is not None:
        record["resolved"] = resolved
    path = Path(out_dir) / SETTINGS_FILE
    _dump(record, path)
    return path


class Frame:
    """What a command's body tells the frame (``command_frame``): where its files go
    (``out``), and the final ``status`` and extra ``fields`` of settings.json."""

    def __init__(self, out):
        self.out = out
        self.status = "complete"
        self.fields = {}


@contextlib.contextmanager
def command_frame(args, command, prefix=None, resolved=None, announce=True):
    """The frame every command runs in, after its arguments were checked.

    Creates the output folder (``--out``, or ``runs/<prefix>-<date>``), writes
    settings.json with status "running" (``resolved``: the settings derived from the
    arguments) and says so; the body gets a ``Frame``. When the body returns, the status
    becomes ``frame.status`` ("complete" unless the body says otherwise) with
    ``frame.fields``; when it raises, "failed" with the message (Ctrl-C: "interrupted",
    written by the command-line entry point, which also prints where the files are).
    """
    out = make_out_dir(args.out, prefix or command.replace(" ", "-"))
    args._out_dir = str(out)  # for the Ctrl-C message
    path = write_settings(out, command, vars(args), getattr(args, "_argv", None), resolved)
    if announce:
        wrote(path, "the exact settings of this run")
    frame = Frame(out)
    try:
        yield frame
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        update_settings(out, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    update_settings(out, status=frame.status, **frame.fields)


def update_settings(out_dir, **fields):
    """Add or replace top-level fields of ``settings.json`` (e.g. ``status="complete"``)."""
    path = Path(out_dir) / SETTINGS_FILE
    record = json.loads(path.read_text())
    record.update(fields)
    _dump(record, path)
    return path


def read_settings(out_dir):
    """The ``settings.json`` record in ``out_dir``, or None if there is none."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--out {out_dir}: cannot read {path} ({exc}); use another --out")


def check_resume(previous, out_dir, command, identity, key):
    """For a command that continues an earlier run in ``out_dir`` (``fastopt sweep``): the
    earlier record ``previous`` must come from ``command`` and hold the same
    ``resolved[key]`` as ``identity`` (the settings that define the results). ValueError
    naming what differs otherwise. The other commands overwrite their files instead."""
    if previous.get("command") != command:
        raise ValueError(f"--out {out_dir} holds the results of `fastopt "
                         f"{previous.get('command')}`, not of `fastopt {command}`; use "
                         "another --out")
    before = (previous.get("resolved") or {}).get(key)
    if before != identity:
        if isinstance(before, dict) and isinstance(identity, dict):
            differ = sorted(k for k in set(before) | set(identity)
                            if before.get(k) != identity.get(k))
        else:
            differ = [key]
        raise ValueError(f"--out {out_dir} holds a different {command} (it differs in: "
                         f"{', '.join(differ)}; recorded in {SETTINGS_FILE}: "
                         f"{previous.get('command_line')}); repeat that command to resume "
                         "it, or use another --out")
    return previous


def _dump(record, path):
    with atomic_file(path, "w") as f:  # never a half-written record, even when interrupted
        f.write(json.dumps(record, indent=2, default=_jsonable) + "\n")


# ---------------------------------------------------------------------------------------
# files that appear whole or not at all

STALE_SECONDS = 60.0  # a temporary file this old whose writer is gone is removed


@contextlib.contextmanager
def atomic_file(path, mode="wb", tmp_name=None):
    """Write ``path`` whole or not at all: yields a file opened with ``mode`` on a new
    temporary file in the same folder, then flushes it to disk (fsync), renames it over
    ``path`` and syncs the folder. On an exception the temporary file is removed and
    ``path`` is left as it was.

    The temporary file is ``.<tmp_name>-<pid>-<random>.tmp`` (``tmp_name`` defaults to the
    file's name): unique, so two writers never share one, and created with the process's
    umask like any other file. One left by a writer that was killed (its pid is gone, the
    file older than ``STALE_SECONDS``) is removed by the next ``atomic_file`` of that name.
    """
    path = Path(path)
    folder = path.parent
    tag = tmp_name or path.name
    remove_stale_temporaries(folder, tag)
    while True:
        tmp = folder / f".{tag}-{os.getpid()}-{os.urandom(6).hex()}.tmp"
        try:  # O_EXCL: never another writer's file; 0o666 & ~umask, as open() would
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def _sync_folder(folder):
    """fsync a folder, so that a rename in it survives a power cut (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder, tag, now=None):
    """Remove ``folder/.<tag>-<pid>-<random>.tmp`` files whose writer process is gone and
    that are older than ``STALE_SECONDS`` (left by a writer that was killed); returns the
    paths removed."""
    import time

    now = time.time() if now is None else now
    removed = []
    try:
        candidates = list(Path(folder).glob(f".{tag}-*-*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        pid = tmp.name[len(tag) + 2:].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
                removed.append(tmp)
    return removed


def _alive(pid):
    """True if process ``pid`` runs on this machine (or cannot be asked: Windows)."""
    if os.name == "nt" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


# ---------------------------------------------------------------------------------------
# figures


def use_agg():
    """Select matplotlib's non-interactive Agg backend, unless pyplot is already in use.

    The commands draw on ``matplotlib.figure.Figure`` objects and never need pyplot; if a
    caller (a notebook) has pyplot open, its backend is left alone.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def save_figure(fig, out_dir, name, svg=False, dpi=150):
    """Write ``fig`` as ``<name>.png`` (and ``<name>.svg`` if ``svg``); returns the paths."""
    paths = [Path(out_dir) / f"{name}.png"]
    if svg:
        paths.append(Path(out_dir) / f"{name}.svg")
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return paths


def wrote(path, what):
    """Tell the user where a result went."""
    print(f"wrote {path}: {what}", flush=True)
