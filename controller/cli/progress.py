"""A progress bar on stderr for the CLI's long commands."""
from __future__ import annotations

import sys

import click


def progress_bar(label: str, enabled: bool = True, show_eta: bool = False):
    """update(done, total), drawing a click progress bar on stderr; None when
    stderr is not a terminal or not enabled (so --json output and logs stay clean)."""
    if not enabled or not sys.stderr.isatty():
        return None
    state = {"bar": None, "done": 0}

    def update(done, total):
        done, total = int(done), max(1, int(total))
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr,
                                             show_eta=show_eta)
            state["bar"].__enter__()
            state["done"] = 0
        state["bar"].update(done - state["done"])
        state["done"] = done
        if done >= total:
            state["bar"].__exit__(None, None, None)
            state["bar"] = None

    return update
