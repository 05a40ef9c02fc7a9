"""Reading a scenario's fields (docs/scenarios.md): each mapping of the file with
its field path, so that a value of the wrong kind, out of its range or unknown
raises ScenarioError naming the file, the field, what was expected and what
was there."""

from __future__ import annotations

import math

from pollen_controller.errors import ScenarioError

_REQUIRED = object()


def fail(src, path, expected, got):
    raise ScenarioError(f"scenario '{src}': field '{path}': expected {expected}, got {got!r}")


class Fields:
    # One mapping of the file and its field path, for messages that name the field.
    def __init__(self, src, path, value, known):
        self.src, self.path = src, path
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(None, "a mapping", value)
        for k in value:
            if k not in known:
                raise ScenarioError(f"scenario '{src}': field '{self.at(k)}': unknown "
                                    f"(known: {', '.join(known)})")
        self.d = value

    def at(self, key):
        if key is None:
            return self.path
        return f"{self.path}.{key}" if self.path else str(key)

    def fail(self, key, expected, got):
        fail(self.src, self.at(key), expected, got)

    def has(self, key):
        return self.d.get(key) is not None

    def get(self, key, default=_REQUIRED, expected="a value"):
        v = self.d.get(key)
        if v is None:
            if default is _REQUIRED:
                self.fail(key, expected, None)
            return default
        return v

    def number(self, key, default=_REQUIRED, lo=None, above=None, hi=None, integer=False):
        # an absent key gives the default as it is
        expected = _describe(lo, above, hi, integer)
        if not self.has(key):
            return self.get(key, default, expected)
        return _check(self, key, self.d[key], lo, above, hi, integer, expected)

    def span(self, key, default=_REQUIRED, lo=None, above=None):
        # a number or [min, max]; returns (min, max)
        expected = _describe(lo, above, None, False) + " or [min, max] of them"
        if not self.has(key):
            v = self.get(key, default, expected)
            return v, v
        v = self.d[key]
        pair = v if isinstance(v, (list, tuple)) else [v, v]
        if len(pair) != 2:
            self.fail(key, expected, v)
        a, b = (_check(self, key, x, lo, above, None, False, expected, v) for x in pair)
        if a > b:
            self.fail(key, "[min, max] with min <= max", v)
        return a, b

    def point(self, key, v, expected="[x_m, y_m] (numbers)", above=None):
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            self.fail(key, expected, v)
        return tuple(_check(self, key, x, None, above, None, False, expected, v) for x in v)

    def choice(self, key, options, default=_REQUIRED):
        v = self.get(key, default, "one of " + ", ".join(options))
        if v not in options:
            self.fail(key, "one of " + ", ".join(options), v)
        return v


def _describe(lo, above, hi, integer):
    what = "an integer" if integer else "a number"
    if above is not None:
        return f"{what} > {above:g}"
    if lo is not None and hi is not None:
        return f"{what} {lo:g}..{hi:g}"
    if lo is not None:
        return f"{what} >= {lo:g}"
    if hi is not None:
        return f"{what} <= {hi:g}"
    return what


def _check(f, key, v, lo, above, hi, integer, expected, shown=None):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or isinstance(v, float) and not math.isfinite(v) \
            or lo is not None and v < lo or above is not None and v <= above \
            or hi is not None and v > hi:
        f.fail(key, expected, v if shown is None else shown)
    return v if integer else float(v)
