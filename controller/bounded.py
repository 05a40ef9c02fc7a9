"""Reading what a user or a remote hands the host, within a bound: never a
whole device (/dev/zero), a sparse file's gigabyte or an endless HTTP
response into memory. The size is checked before reading where the file
system tells it, and the read stops one byte past the bound either way."""
from __future__ import annotations

import os
import stat

from pollen_controller.errors import InputError

_PIECE_BYTES = 65536


def check_file(path, limit_bytes: int, error=InputError, hint: str = "") -> int:
    """The size of the regular file at path, without reading it; `error`
    naming the path for anything else (a device, a pipe, a folder) or for a
    file over limit_bytes (its size, the limit, then hint)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a device, pipe or folder is not read)")
    if st.st_size > limit_bytes:
        raise error(f"{path}: file is {st.st_size} bytes; the limit is {limit_bytes}{hint}")
    return st.st_size


def read_stream(f, limit_bytes: int) -> bytes | None:
    """At most limit_bytes from f (read a piece at a time); None if there is more."""
    out = bytearray()
    while True:
        piece = f.read(min(_PIECE_BYTES, limit_bytes + 1 - len(out)))
        if not piece:
            return bytes(out)
        out += piece
        if len(out) > limit_bytes:
            return None


def read_file(path, limit_bytes: int, error=InputError, hint: str = "") -> bytes:
    """The bytes of the regular file at path, at most limit_bytes (check_file
    first; `error` too if it grew past the bound while being read)."""
    check_file(path, limit_bytes, error, hint)
    with open(path, "rb") as f:
        data = read_stream(f, limit_bytes)
    if data is None:
        raise error(f"{path}: file is over {limit_bytes} bytes (it grew while being read){hint}")
    return data


SMALL_FILE_BYTES = 65536   # network files, config YAML, board profiles: a few KB at most


def read_small(path, limit_bytes: int = SMALL_FILE_BYTES, error=InputError,
               what: str = "") -> bytes:
    """The bytes of a small file a user names (a network file, a config, a
    board profile), read one piece at a time and at most limit_bytes + 1 of
    them: a device (/dev/zero) or a large file named by mistake is refused
    after the bound, a pipe (process substitution) is read as it comes.
    `error` naming the path (after `what`, e.g. "network file ") for what
    cannot be read or is over the bound."""
    try:
        with open(path, "rb") as f:
            data = read_stream(f, limit_bytes)
    except OSError as e:
        raise error(f"{what}{path}: cannot be read ({e.strerror or e})") from None
    if data is None:
        raise error(f"{what}{path}: over {limit_bytes} bytes; not a file of this kind (a device, or "
                    "another file named by mistake?)")
    return data
