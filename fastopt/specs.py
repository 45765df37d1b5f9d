"""One reader for the ``key=value`` texts of the command line and the Python API.

Four little languages share it: optimizer lists (``adam:lr=3e-4,beta2=0.99``, see
``fastopt.experiments.optspec``), initialiser specs (``normal:std=0.05``,
``fastopt.init.get``), schedules (``cosine:decay_steps=1000,alpha=0.1``,
``fastopt.schedules.from_string``) and sweep spaces (``lr=loguniform(1e-4,1e-1)``,
``fastopt.sweep.space``). Each keeps its own grammar and its own error wording for what is
particular to it; the pieces they have in common live here once:

* ``split``: cut a text at a separator (or whitespace) outside parentheses and quotes;
* ``head``: ``NAME[:rest]`` -> the lower-case name and the rest;
* ``key_value``: one ``key=value`` item -> (lower-case key, value text), or None;
* ``options``: the ``key=value,key=value`` rest of a spec, with the checks every spec makes
  (malformed item, key given twice);
* ``scalar``: a value text -> bool, None, int or float, as a language allows.

>>> list(options("decay_steps=100, alpha=0.1", "schedule spec 'cosine:...'"))
[('decay_steps', '100'), ('alpha', '0.1')]
>>> scalar("1e3", "demo"), scalar("1000", "demo", ints=True), scalar("TRUE", "demo")
(1000.0, 1000, True)
"""


def split(text, where, sep=None):
    """Items of ``text`` separated by ``sep`` (None: whitespace), outside parentheses and
    quotes. Whitespace-split items that are empty are dropped; ``sep``-split items are
    stripped and kept even when empty (so that ``a,,b`` can be refused). ``where`` starts
    the error messages (e.g. the option's flag)."""
    items, buf, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{where}: a ')' without its '(' in {text!r}")
        if depth == 0 and (ch.isspace() if sep is None else ch == sep):
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quote:
        raise ValueError(f"{where}: a {quote} quote is not closed in {text!r}")
    if depth:
        raise ValueError(f"{where}: a '(' is not closed in {text!r}")
    items.append("".join(buf))
    if sep is None:
        return [w for w in items if w]
    return [w.strip() for w in items]


def head(spec):
    """``"Name : rest"`` -> ("name", " rest"); ("name", "") without a colon."""
    name, _, rest = spec.partition(":")
    return name.strip().lower(), rest


def key_value(item):
    """``" Key = value "`` -> ("key", "value"); None unless both sides are non-empty."""
    key, eq, value = item.partition("=")
    key, value = key.strip().lower(), value.strip()
    if not eq or not key or not value:
        return None
    return key, value


def options(rest, where):
    """(key, value text) of each ``key=value`` item of ``rest`` (comma-separated), in order.

    Raises ValueError naming ``where`` (e.g. ``"schedule spec 'cosine:...'"``) for an item
    that is not ``key=value`` and for a key given twice; an empty ``rest`` has no items.
    """
    if not rest.strip():
        return
    seen = set()
    for item in rest.split(","):
        pair = key_value(item)
        if pair is None:
            raise ValueError(f"bad item {item.strip()!r} in {where}; expected key=value items "
                             "separated by ','")
        if pair[0] in seen:
            raise ValueError(f"key {pair[0]!r} given twice in {where}")
        seen.add(pair[0])
        yield pair


def scalar(text, where, ints=False, none=False):
    """``true``/``false`` (any case), a float - or, where the language has them, ``none``
    and integers written without a decimal point (``ints``: "1000" is an int, "1e3" a
    float). ValueError naming ``where`` otherwise."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if none and low == "none":
        return None
    if ints:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        pass
    if ints or none:
        raise ValueError(f"{where}: cannot parse {text!r}; expected a number, true, false"
                         + (" or none" if none else ""))
    raise ValueError(f"{where}: cannot read {text!r} as a number or true/false")
