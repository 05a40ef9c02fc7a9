"""Text from the air, made safe for the host: to show on a terminal, in a log
or a table (safe_text), and to name a local file by (safe_file_name).

Anyone in the network can name a node, a file or write a message, so every
such string is untrusted. Shown raw, an escape sequence recolours or clears
the terminal, a newline forges a log line, a bidi override reverses what
follows it; used raw as a file name, "../" or a leading "-" does worse.

safe_text keeps letters of every script, emoji (with their joiners and
variation selectors), combining marks and right-to-left text as they are,
and writes everything else visibly as an escape: newline as \\n, ESC as
\\x1b, a bidi override as \\u202e. It is for text meant for people; JSON
output needs none of it (json.dumps escapes control characters itself).
"""
from __future__ import annotations

import unicodedata

# format characters (Cf) that emoji and some scripts need: the zero-width
# joiner and non-joiner; every other Cf (bidi embeddings, overrides and
# isolates, LRM/RLM, tag characters, the BOM, invisible operators) is escaped
_KEPT_FORMAT = frozenset("\u200c\u200d")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# categories escaped: control (C0, DEL, C1), format, surrogate (a lone half
# of a pair: it cannot even be encoded to print), line and paragraph separators
_ESCAPED = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))

MAX_FILE_NAME_BYTES = 120   # well below NAME_MAX (255 bytes) of every common file system
_NOT_IN_FILE_NAMES = frozenset('/\\:*?"<>|')   # separators here and on Windows, wildcards


def _escape(c: str) -> str:
    o = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def _unsafe(c: str) -> bool:
    return unicodedata.category(c) in _ESCAPED and c not in _KEPT_FORMAT


def safe_text(text, limit: int | None = None) -> str:
    """text (any object; None is "") with control, escape and format
    characters written as visible escapes, cut to `limit` characters (the
    last one then "…")."""
    if text is None:
        return ""
    s = str(text)
    if any(_unsafe(c) for c in s):
        s = "".join(_escape(c) if _unsafe(c) else c for c in s)
    if limit is not None and len(s) > limit:
        s = s[:max(0, limit - 1)] + "\u2026"
    return s


def safe_file_name(name, fallback: str) -> str:
    """A remote file name made a safe name for a file in the current folder:
    no path separators or wildcards, no control or format characters (each
    becomes "_"), no leading dot, dash or space (no hidden file, no option,
    not "." or ".."), no trailing dot or space, at most MAX_FILE_NAME_BYTES
    of UTF-8 (the extension kept when it is short). fallback (e.g. the
    content id) when nothing is left."""
    s = unicodedata.normalize("NFC", str(name or ""))
    s = "".join("_" if c in _NOT_IN_FILE_NAMES or _unsafe(c) else c for c in s)
    s = s.lstrip(" .-").rstrip(" .")
    if len(s.encode()) > MAX_FILE_NAME_BYTES:
        stem, dot, ext = s.rpartition(".")
        if not dot or not stem or len(ext.encode()) > 16:
            stem, ext = s, ""
        ext = "." + ext if ext else ""
        room = MAX_FILE_NAME_BYTES - len(ext.encode())
        stem = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
        s = stem + ext
    return s or fallback
