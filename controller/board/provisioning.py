"""Writing a node's config.json: the step of `pollen provision`. Network
files and shared strings are in network_files.py, installing the app bundle
(`pollen flash`) in install.py; both re-exported here for their callers."""
from __future__ import annotations

import json

from pollen_controller.board.install import (  # noqa: F401  (re-exported: callers and tests)
    check_filesystem, check_installed, install_bundle)
from pollen_controller.board.network_files import (  # noqa: F401  (their old home)
    NETWORK_VERSION, SHARE_PREFIX, check_network, create_network, load_network,
    parse_share_string, save_network, share_string)
from pollen_controller.board.node_config import make_config
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.errors import NetworkError  # noqa: F401  (callers catch it here)
from pollen_controller.node.lines import node_json


# ---- config.json ------------------------------------------------------------

def provision(board: Board, net: dict, name: str | None = None, node_id: int | None = None,
              radio: dict | None = None, kept: list | None = None, identity: bool = False) -> dict:
    """Write the node's config.json (atomically) and return it. Id, name,
    radio and other settings the board's config.json has are kept unless
    given (node_config.make_config); their fields are appended to `kept`."""
    profile = _read_json(board, "board.json", "run pollen flash again")
    try:
        old = _read_json(board, "config.json", "give --node-id and --name to write a new one")
    except BoardError:
        if node_id is None or name is None:
            raise
        old = {}   # damaged, and both given: a new one
    cfg, kept_fields = make_config(old, net, profile, name, node_id, radio, identity)
    board.write_atomic("config.json", (node_json(cfg) + "\n").encode())
    if kept is not None:
        kept += kept_fields
    return cfg


def _read_json(board: Board, path: str, what_to_do: str) -> dict:
    raw = board.read(path)
    try:
        d = json.loads(raw) if raw else {}
    except ValueError:
        d = None
    if not isinstance(d, dict):
        raise BoardError(f"{board.port}: {path} on the board is damaged (not a JSON object); "
                         f"{what_to_do}")
    return d
