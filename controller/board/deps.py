"""micropython-lib packages for the board (the LoRa drivers), kept in an
offline cache: `pollen deps fetch` downloads them once while online, from the
same package index mip uses; `pollen flash` installs them from the cache into
the board's /lib, so flashing works in the field without Internet.

Index layout (mip v2): {index}/package/{mpy major}/{name}/latest.json lists
"hashes": [[path, short_hash]] and "deps": [[name, version]]; each file is at
{index}/file/{short_hash[:2]}/{short_hash}, short_hash being the first 8 hex
digits of its SHA-256.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from pollen_controller.bounded import read_stream
from pollen_controller.errors import DepsError
from pollen_controller.files_atomic import write_atomic

DEFAULT_INDEX = "https://micropython.org/pi/v2"
MPY_MAJOR = 6


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pollen" / "mip"


_MAX_DOWNLOAD_BYTES = 4 << 20   # a micropython-lib file or index is a few KiB


def _get(url: str, timeout_s: float = 20) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            data = read_stream(r, _MAX_DOWNLOAD_BYTES)
        if data is None:
            raise DepsError(f"{url}: over {_MAX_DOWNLOAD_BYTES} bytes; not a micropython-lib file")
        return data
    except urllib.error.HTTPError as e:
        raise DepsError(f"{url}: HTTP {e.code} (is the package name right?)") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DepsError(f"cannot reach {url} ({reason}); pollen deps fetch needs Internet "
                        "once — run it while online, then flash offline") from None


def fetch(packages: list[str], cache: Path | None = None, index: str = DEFAULT_INDEX) -> list[str]:
    """Download packages (and their dependencies) into the cache; returns all names."""
    cache = Path(cache or default_cache())
    done: list[str] = []
    todo = list(packages)
    while todo:
        name = todo.pop(0)
        if name in done:
            continue
        url = f"{index}/package/{MPY_MAJOR}/{name}/latest.json"
        try:
            meta = json.loads(_get(url))
        except ValueError:
            raise DepsError(f"{url}: not a package description (not JSON); is --index "
                            "a micropython-lib index?") from None
        for path, short in meta.get("hashes", ()):
            target = cache / "files" / short
            if target.exists() and _short(target.read_bytes()) == short:
                continue
            data = _get(f"{index}/file/{short[:2]}/{short}")
            if _short(data) != short:
                raise DepsError(f"{name}: {path} does not match its hash {short}; try again")
            write_atomic(target, data)
        write_atomic(cache / "packages" / f"{name}.json", json.dumps(meta))
        done.append(name)
        todo.extend(dep for dep, _ in meta.get("deps", ()))
    return done


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def cached_files(packages: list[str], cache: Path | None = None) -> list[tuple[str, Path]]:
    """[(path under /lib, cached file)] for packages and their deps, from the cache only."""
    cache = Path(cache or default_cache())
    out, seen, todo = [], set(), list(packages)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        meta_path = cache / "packages" / f"{name}.json"
        if not meta_path.exists():
            raise DepsError(f"{name} is not in the offline cache {cache}; run "
                            f"'pollen deps fetch {name}' once while online")
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            raise DepsError(f"{name}: cached {meta_path} is damaged; run "
                            f"'pollen deps fetch {name}' again") from None
        for path, short in meta.get("hashes", ()):
            f = cache / "files" / short
            if not f.exists() or _short(f.read_bytes()) != short:
                raise DepsError(f"{name}: cached {path} is missing or damaged; run "
                                f"'pollen deps fetch {name}' again")
            out.append((path, f))
        todo.extend(dep for dep, _ in meta.get("deps", ()))
    return out


def driver_files(packages: list[str], cache: Path | None = None) -> list[tuple[str, bytes]]:
    """[(path on the board under lib/, data)] of cached packages and their deps
    (DepsError before anything touches a board when one is not cached)."""
    return [("lib/" + path, f.read_bytes()) for path, f in cached_files(packages, cache)]


def install(board, packages: list[str], cache: Path | None = None) -> dict:
    """Copy cached packages into the board's /lib (verified; up-to-date files skipped).
    `pollen flash` passes driver_files to install_bundle instead: written
    before the board's boot entry (board/install.py)."""
    written, skipped = [], []
    for dest, data in driver_files(packages, cache):
        if board.sha256(dest) == hashlib.sha256(data).hexdigest():
            skipped.append(dest)
            continue
        board.write_atomic(dest, data)
        written.append(dest)
    return {"written": written, "skipped": skipped}
