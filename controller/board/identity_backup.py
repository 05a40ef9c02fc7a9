"""The host's backup of the node identities it provisioned (docs/identity.md):
one JSON file per node, XDG_DATA_HOME/pollen/identities/<node id>.json
(~/.local/share/... by default), readable by the user only. A node's secret
key is on the node and here, nowhere else."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pollen_controller.files_atomic import write_atomic


def backup_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pollen" / "identities"


def save_backup(cfg: dict) -> Path:
    """Write (atomically, mode 600) the identity of a provisioned node's config; its path."""
    folder = backup_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"{cfg['node_id']}.json"
    data = {"node_id": cfg["node_id"], "name": cfg.get("name"), "network": cfg.get("network"),
            "identity_key": cfg["identity_key"]}
    write_atomic(path, (json.dumps(data, indent=1) + "\n").encode(), mode=0o600)
    return path
