"""node/commands.py without a node: resolving --to, KEY=VALUE, checking a
config as the node does, and the YAML of config export/import. The commands
on a running node (through a virtual board) are in tests/test_cli_files.py."""
import pytest

from pollen_controller.errors import InputError
from pollen_controller.node import commands

KEY = "ab" * 32
CFG = {"node_id": "0000000c", "name": "bakery", "network_key": KEY, "region": "EU868-10",
       "preset": "ShortFast", "radio": {"kind": "udp", "port": 47000}, "network": "village",
       "board": "virtual"}
STATUS = {"id": "0000000c", "name": "bakery",
          "neighbours": [{"id": "00000001", "name": "mill"}, {"id": "000000be", "name": "Bee"},
                         {"id": "00000003", "name": None}]}


@pytest.mark.parametrize("to, dest", [
    ("all", "all"), ("ALL", "all"), ("mill", "00000001"), ("MILL", "00000001"),
    ("Bee", "000000be"),            # a name that is also hex is the name
    ("3", "00000003"), ("0000abcd", "0000abcd"), (" mill ", "00000001"),
])
def test_to_resolves_names_among_the_neighbours_and_ids(to, dest):
    assert commands.resolve_destination(to, STATUS) == dest


def test_to_names_what_is_wrong():
    with pytest.raises(InputError, match=r"--to: .*no neighbour is named 'bakehouse' "
                                         r"\(neighbours: mill \(00000001\), Bee \(000000be\), "
                                         r"\? \(00000003\)\); a neighbour's name \(\?\) is "
                                         r"known once its beacon is heard"):
        commands.resolve_destination("bakehouse", STATUS)
    with pytest.raises(InputError, match="is this node itself"):
        commands.resolve_destination("bakery", STATUS)
    twins = dict(STATUS, neighbours=[{"id": "00000001", "name": "x"},
                                     {"id": "00000002", "name": "x"}])
    with pytest.raises(InputError, match=r"2 neighbours are named 'x' \(00000001, 00000002\)"):
        commands.resolve_destination("x", twins)


def test_assignments_parse_json_values_keep_ids_as_text_and_reach_into_objects():
    new, changed = commands.apply_assignments(CFG, [
        "beacon_interval_ms=60000", "name=00000010", "radio.port=47001", "node_id=00000010",
        "network="])
    assert changed == {"beacon_interval_ms": 60000, "name": "00000010", "radio.port": 47001,
                       "node_id": "00000010", "network": None}
    assert new["radio"] == {"kind": "udp", "port": 47001} and "network" not in new
    assert CFG["radio"]["port"] == 47000          # the original is left alone
    assert commands.check_config(new) is new
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        commands.apply_assignments(CFG, ["beacon_interval_ms"])
    with pytest.raises(InputError, match="field 'name' is not an object"):
        commands.apply_assignments(CFG, ["name.x=1"])


@pytest.mark.parametrize("change, message", [
    ({"beacon_interval_ms": 500}, "config field 'beacon_interval_ms': expected an integer "
                                  "1000..86400000, got 500"),
    ({"hop_limit": "nine"}, "config field 'hop_limit': expected an integer 1..7, got 'nine'"),
    ({"colour": "red"}, "config field 'colour': unknown (known: node_id, name,"),
    ({"radio": {"kind": "udp", "port": 0}}, "config field 'radio.port': expected a UDP port"),
    ({"status_interval_ms": -1}, "config field 'status_interval_ms': expected an integer >= 0"),
])
def test_a_config_is_checked_as_the_node_checks_it_naming_the_field(change, message):
    with pytest.raises(InputError) as e:
        commands.check_config(dict(CFG, **change))
    assert str(e.value).startswith("config.json: " + message)


def test_export_leaves_the_key_out_unless_asked_and_import_keeps_the_nodes_own():
    text = commands.config_to_yaml(CFG)
    assert KEY not in text and "network_key" in text.splitlines()[1]   # said in a comment
    back = commands.config_from_yaml(text, "x.yaml", current=CFG)
    assert back == CFG
    with_key = commands.config_to_yaml(dict(CFG, node_id="00000012"), with_key=True)
    assert KEY in with_key
    other = dict(CFG, network_key="cd" * 32)
    # (another node's id: taken only with force, see below)
    assert commands.config_from_yaml(with_key, "x.yaml", current=other,
                                     force=True)["network_key"] == KEY
    # an id that looks like a number survives YAML as text (not octal, not int)
    assert commands.config_from_yaml(with_key, "x.yaml", CFG, force=True)["node_id"] == "00000012"
    assert commands.hide_key(CFG)["network_key"] == "(hidden)"


@pytest.mark.parametrize("text, message", [
    ("name: [unclosed", "x.yaml: not valid YAML at line 1"),
    ("- a list", "x.yaml: expected a mapping of config fields"),
    ("node_id: 0000000c\npreset: LongFastest\n", "x.yaml: config field 'preset': expected one of"),
])
def test_import_refuses_bad_files_naming_what_is_wrong(text, message):
    with pytest.raises(InputError) as e:
        commands.config_from_yaml(text, "x.yaml", current=CFG)
    assert str(e.value).startswith(message)


def test_info_shows_names_from_the_air_escaped():
    from pollen_controller.cli.node_commands import render_info

    st = {"id": "0000000a", "name": "hall", "counters": {"rx": 1},
          "neighbours": [{"id": "0000000b", "name": "evil\x1b[2J\u202e", "rssi_dbm": -90,
                          "snr_db": 5.0, "last_heard_s": 3}]}
    text = render_info({"status": st})
    assert "\x1b" not in text and "\u202e" not in text
    assert "evil\\x1b[2J\\u202e" in text and "'hall'" in text


def _with_identity():
    from pollen_controller.board.node_config import new_identity

    ident, node_id = new_identity(bytes(range(32)))
    return dict(CFG, node_id=f"{node_id:08x}", identity_key=ident), ident


def test_the_identity_secret_is_hidden_and_exported_only_with_the_key_and_kept_on_import():
    cfg, ident = _with_identity()
    # info: neither secret shown
    assert commands.hide_key(cfg)["identity_key"] == "(hidden)"
    assert commands.hide_key(cfg)["network_key"] == "(hidden)"
    # export: the node's X25519 secret is a key like the network key
    text = commands.config_to_yaml(cfg)
    assert ident not in text and KEY not in text and "identity_key" in text.splitlines()[1]
    assert ident in commands.config_to_yaml(cfg, with_key=True)
    # import of an export without it keeps the node's own (its id is its key's)
    assert commands.config_from_yaml(text, "x.yaml", current=cfg) == cfg
    # a config read from the console, key fields "(hidden)", never writes them
    shown = commands.hide_key(cfg)
    back = commands.config_from_yaml(commands.config_to_yaml(shown), "x.yaml", current=cfg)
    assert back == cfg


def test_info_renders_the_config_without_secrets_and_unicode_as_itself():
    from pollen_controller.cli.node_commands import render_info

    cfg, ident = _with_identity()
    out = {"status": {"id": cfg["node_id"], "name": "café 🌻", "neighbours": []},
           "config": commands.hide_key(dict(cfg, name="café 🌻\u202e"))}
    text = render_info(out)
    assert ident not in text and KEY not in text
    assert 'name: "café 🌻\\u202e"' in text        # readable, the bidi override escaped


@pytest.mark.parametrize("name, message", [
    ("   ", "config field 'name': expected a name that is not blank"),
    ("a\x1bb", "config field 'name': expected printable characters, got 'a\\x1bb' (U+001B"),
    ("x\u202e", "config field 'name': expected printable characters"),
])
def test_set_and_import_check_a_name_as_provision_does(name, message):
    with pytest.raises(InputError) as e:
        commands.check_config(dict(CFG, name=name))
    assert str(e.value).startswith("config.json: " + message)
    new, _ = commands.apply_assignments(CFG, [f"name={name}"])
    with pytest.raises(InputError):
        commands.check_config(new)


def test_info_shows_the_network_keys_fingerprint():
    from pollen_controller.cli.node_commands import render_info

    out = {"status": {"id": "0000000c", "name": "bakery", "neighbours": []},
           "config": commands.hide_key(CFG), "key_fingerprint": "6c91-5151-538f-7e8e"}
    text = render_info(out)
    assert "key       fingerprint 6c91-5151-538f-7e8e" in text and KEY not in text


def test_set_says_what_changed_with_text_as_itself():
    from pollen_controller.cli.node_commands import render_changes

    shown = commands.hide_key({"name": "café 🌻", "hop_limit": None, "network_key": KEY,
                               "network": "a\x1bb"})
    assert render_changes(shown) == ['name = "café 🌻"', "hop_limit = (default)",
                                     'network_key = "(hidden)"', 'network = "a\\u001bb"']


def test_import_never_gives_a_node_another_nodes_identity_unless_forced():
    # one node's export imported onto a second (to set it up alike) would
    # give two nodes one id (with --with-key, one X25519 identity): the mesh
    # cannot tell them apart
    a, ident_a = _with_identity()
    from pollen_controller.board.node_config import new_identity

    ident_b, id_b = new_identity(bytes(range(1, 33)))
    b = dict(CFG, node_id=f"{id_b:08x}", identity_key=ident_b, name="mill")
    for text in (commands.config_to_yaml(a), commands.config_to_yaml(a, with_key=True)):
        with pytest.raises(InputError) as e:
            commands.config_from_yaml(text, "a.yaml", current=b)
        assert str(e.value).startswith(f"a.yaml: node_id {a['node_id']} is another node's "
                                       f"(this one is {b['node_id']})"), str(e.value)
        assert "--force" in str(e.value)
    cloned = commands.config_from_yaml(commands.config_to_yaml(a, with_key=True), "a.yaml",
                                       current=b, force=True)
    assert cloned["node_id"] == a["node_id"] and cloned["identity_key"] == ident_a
    # without node_id (and identity_key) in the file: the settings, this node's identity
    settings_only = "\n".join(l for l in commands.config_to_yaml(a).splitlines()
                              if not l.startswith(("node_id:", "name:"))) + "\nhop_limit: 4\n"
    got = commands.config_from_yaml(settings_only, "a.yaml", current=b)
    assert (got["node_id"], got["identity_key"], got["name"], got["hop_limit"]) == (
        b["node_id"], ident_b, "mill", 4)
