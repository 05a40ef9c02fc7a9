# The console's config command (docs/console.md): the node's config.json,
# with the network key left out: the key never leaves a node through its
# console (pollen config export --with-key reads it through the REPL).
# Loaded for the command and dropped after it (App.command).
import json

from pollen_io.app import CONFIG, emit


def cmd_config(ref):
    try:
        with open(CONFIG) as f:
            d = json.load(f)
    except (OSError, ValueError):
        raise ValueError("%s cannot be read" % CONFIG)
    if "network_key" in d:
        d["network_key"] = "(hidden)"
    emit("config", config=d, ref=ref)
