"""Drawing conventions the experiment figures share: one colour and width per optimizer
line, seed bands, dotted reference lines and log axes with plain-number ticks.

Each takes the matplotlib axes to draw on; matplotlib is imported only inside the
functions, so the command modules stay quick to import.
"""


def line_style(i, widest, narrowing, **extra):
    """Style of the ``i``-th optimizer's line: colour ``C0..C9``, dashed after the first
    ten, and a width that shrinks from ``widest`` by ``narrowing`` per line (to 1.2 at
    least), so a line that a later one follows stays visible beneath it."""
    return dict(color=f"C{i % 10}", ls="-" if i < 10 else "--",
                lw=max(widest - narrowing * i, 1.2), **extra)


def band(ax, x, low, high, color):
    """The shaded min..max band over seeds of a line of colour ``color``."""
    ax.fill_between(x, low, high, color=color, alpha=0.18, lw=0)


def reference_line(ax, y, name, text, x, ha, va, color="0.3", text_y=None):
    """A dotted horizontal line at ``y`` (left out of the legend: labelled ``_<name>``) and
    a small grey ``text`` at ``x`` in axes coordinates, ``text_y`` (default ``y``) in data
    coordinates."""
    ax.axhline(y, color=color, ls=":", lw=1.2, label=f"_{name}")
    ax.text(x, y if text_y is None else text_y, text, transform=ax.get_yaxis_transform(),
            ha=ha, va=va, fontsize="small", color="0.3")


def log_ticks(ax, subs=(1.0, 2.0, 5.0)):
    """Major ticks of a log y axis at ``subs`` times the powers of ten, written as plain
    numbers (0.5, 2, 20), and no minor tick labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
