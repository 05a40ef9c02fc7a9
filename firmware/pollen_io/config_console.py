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
    for k in ("network_key", "identity_key"):  # the node's secrets
        if k in d:
            d[k] = "(hidden)"
    emit("config", config=d, ref=ref)
