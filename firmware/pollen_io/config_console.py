# The console's config command (docs/console.md): the node's config.json,
# with the network key and identity secret hidden: they never leave a node
# through its console (pollen config export --with-key reads it through the REPL).
# Loaded for the command and dropped after it (App.command).
import json

from pollen_io.app import CONFIG, emit


def cmd_config(ref):
    try:
        with open(CONFIG) as f:
            d = json.load(f)
    except (OSError, ValueError):
        raise ValueError("%s cannot be read" % CONFIG)
    fp = None
    key = d.get("network_key")
    if isinstance(key, str):
        # the fingerprint pollen network info shows (network_files.py), so
        # a node holding another network's key is told apart without the key
        try:
            import hashlib
            from binascii import hexlify, unhexlify
            h = hexlify(hashlib.sha256(b"pollen network key\0" + unhexlify(key)).digest()[:8])
            fp = "-".join(h[i:i + 4].decode() for i in range(0, 16, 4))
        except ValueError:
            pass
    for k in ("network_key", "identity_key"):  # the node's secrets
        if k in d:
            d[k] = "(hidden)"
    emit("config", config=d, key_fingerprint=fp, ref=ref)
