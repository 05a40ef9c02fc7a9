"""Atomic writes of host files: a temporary file beside the target, renamed
over it, so a crash leaves the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, mode: int | None = None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        data = data.encode()
    tmp.write_bytes(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
