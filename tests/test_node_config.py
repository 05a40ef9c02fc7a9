"""config.json as `pollen provision` decides it (board/node_config.py): the
node keeps its identity, every field is checked naming it, a network outside
the board's band is refused naming both."""
import subprocess
import sys
from pathlib import Path

import pytest

from pollen_controller.board import network_files as nf
from pollen_controller.board.node_config import check_name, make_config, parse_radio
from pollen_controller.errors import BoardError, InputError, NetworkError

POLLEN = str(Path(sys.executable).with_name("pollen"))
NET = nf.create_network("village", "EU868", "ShortFast")
HELTEC = {"id": "heltec-wifi-lora-32-v3", "radio": {"chip": "sx1262", "bands_mhz": [[863, 928]]}}


@pytest.mark.parametrize("name", ["alice", "bäckerei", "🌻 sunflower", "שלום", "a" * 16,
                                  "é" * 8])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name, message", [
    ("", "name: expected a name that is not blank"),
    ("   ", "name: expected a name that is not blank"),
    ("red\x1b[31m", r"name: expected printable characters, got 'red\\x1b\[31m' \(U\+001B"),
    ("a\nb", r"U\+000A is a control or format character"),
    ("bell\x07", "U\\+0007"),
    ("rtl\u202eevil", "U\\+202E"),
    ("a" * 17, r"name: expected at most 16 bytes of UTF-8, got 'a{17}' \(17 bytes\)"),
    ("é" * 9, r"\(18 bytes\)"),
])
def test_bad_names_are_refused_naming_the_field(name, message):
    with pytest.raises(InputError, match=message):
        check_name(name)


def test_radio_option():
    assert parse_radio("lora") == {"kind": "lora"}
    assert parse_radio("udp:1") == {"kind": "udp", "port": 1}
    assert parse_radio("udp:65535") == {"kind": "udp", "port": 65535}
    for bad in ("udp:0", "udp:65536", "udp:99999", "udp:abc", "udp:", "udp:-1", "udp:٣", "LoRa"):
        with pytest.raises(InputError, match=r"--radio: expected 'lora' or 'udp:PORT' with PORT "
                                             r"1..65535 .*got '" + bad):
            parse_radio(bad)


def test_a_new_node_gets_a_random_id_and_needs_a_name():
    with pytest.raises(InputError, match="--name: required, since the board has no name yet"):
        make_config({}, NET, HELTEC)
    cfg, kept = make_config({}, NET, HELTEC, "alice")
    assert kept == [] and cfg["name"] == "alice" and len(cfg["node_id"]) == 8
    assert cfg["radio"] == {"kind": "lora"} and cfg["board"] == "heltec-wifi-lora-32-v3"
    assert make_config({}, NET, {}, "vb")[0]["radio"] == {"kind": "udp"}   # no profile


def test_re_provisioning_keeps_id_name_radio_and_settings_unless_given():
    old = {"node_id": "0a0b0c01", "name": "bakery", "network_key": "00" * 32, "region": "EU868",
           "preset": "LongFast", "radio": {"kind": "lora", "power_dbm": 10}, "network": "old",
           "board": "heltec-wifi-lora-32-v3", "hop_limit": 4, "status_interval_ms": 60000}
    cfg, kept = make_config(old, NET, HELTEC)
    assert kept == ["node_id", "name", "radio", "hop_limit", "status_interval_ms"]
    assert (cfg["node_id"], cfg["name"], cfg["radio"]) == ("0a0b0c01", "bakery",
                                                          {"kind": "lora", "power_dbm": 10})
    assert (cfg["network_key"], cfg["preset"], cfg["network"]) == (NET["key"], "ShortFast",
                                                                    "village")
    assert cfg["hop_limit"] == 4 and cfg["status_interval_ms"] == 60000
    cfg, kept = make_config(old, NET, HELTEC, name="mill", node_id=0x1234)
    assert (cfg["node_id"], cfg["name"]) == ("00001234", "mill") and "name" not in kept
    # a radio set for another board (or none) is not kept
    elsewhere = {**old, "board": None, "radio": {"kind": "udp", "port": 5}}
    cfg, kept = make_config(elsewhere, NET, HELTEC)
    assert cfg["radio"] == {"kind": "lora"} and "radio" not in kept
    with pytest.raises(BoardError, match="config.json has a bad node_id .'zz'.; give --node-id"):
        make_config({**old, "node_id": "zz"}, NET, HELTEC)
    with pytest.raises(InputError, match="the name in the board's config.json .give --name.: "
                                         "expected printable"):
        make_config({**old, "name": "x\x1b"}, NET, HELTEC)
    with pytest.raises(Exception, match="config field 'hop_limit'"):   # the core's own check
        make_config({**old, "hop_limit": 99}, NET, HELTEC)


def test_a_network_outside_the_boards_band_is_refused_naming_both():
    eu433 = nf.create_network("hills", "EU433", "LongFast")
    with pytest.raises(NetworkError, match=r"network 'hills' is for EU433 \(433.175 MHz\), but "
                                           "board heltec-wifi-lora-32-v3 works in 863-928 MHz"):
        make_config({}, eu433, HELTEC, "n")
    # a board.json from before bands_mhz: the host's profile of that id states it
    with pytest.raises(NetworkError, match="board heltec-wifi-lora-32-v3 works in 863-928 MHz"):
        make_config({}, eu433, {"id": "heltec-wifi-lora-32-v3", "radio": {"chip": "sx1262"}}, "n")
    us = nf.create_network("us", "US915", "MediumFast")
    assert make_config({}, us, HELTEC, "n")[0]["region"] == "US915"
    assert make_config({}, eu433, {}, "n")[0]["region"] == "EU433"   # virtual board: no band


@pytest.mark.parametrize("args, message", [
    (["--name", "a\x07"], "pollen: --name: expected printable characters"),
    (["--name", "  "], "pollen: --name: expected a name that is not blank"),
    (["--name", "x" * 17], "pollen: --name: expected at most 16 bytes of UTF-8"),
    (["--name", "a", "--radio", "udp:abc"], "pollen: --radio: expected 'lora' or 'udp:PORT'"),
    (["--name", "a", "--radio", "udp:0"], "pollen: --radio: expected 'lora' or 'udp:PORT'"),
    (["--name", "a", "--radio", "udp:99999"], "pollen: --radio: expected 'lora' or 'udp:PORT'"),
])
def test_provision_options_are_checked_before_the_port_is_opened(tmp_path, args, message):
    nf.save_network(NET, tmp_path / "v.json")
    r = subprocess.run([POLLEN, "provision", "--port", "/nonexistent", "--network", "v.json",
                        *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith(message), r.stderr
    assert r.stderr.count("\n") == 1


# ---- identities (docs/identity.md) ---------------------------------------------

def test_a_new_node_gets_an_identity_and_the_id_its_key_gives():
    from pollen.identity import node_id_from_public
    cfg, kept = make_config({}, NET, {}, "n")
    key = bytes.fromhex(cfg["identity_key"])
    assert len(key) == 64 and int(cfg["node_id"], 16) == node_id_from_public(key[32:])
    again, kept = make_config(cfg, NET, {}, None)        # re-provisioned: kept
    assert (again["identity_key"], again["node_id"]) == (cfg["identity_key"], cfg["node_id"])
    assert "identity_key" in kept
    with pytest.raises(InputError, match="--node-id: this node has an identity"):
        make_config(cfg, NET, {}, None, node_id=0x0A0B0C01)
    forged = dict(cfg, identity_key=cfg["identity_key"][:64] + "00" * 32)
    with pytest.raises(BoardError, match="public key is not its secret's"):
        make_config(forged, NET, {}, None)


def test_a_node_without_an_identity_keeps_its_id_unless_given_one():
    old = {"node_id": "0a0b0c01", "name": "old"}
    cfg, _ = make_config(old, NET, {}, None)
    assert cfg["node_id"] == "0a0b0c01" and "identity_key" not in cfg
    cfg, _ = make_config(old, NET, {}, None, identity=True)
    assert cfg["node_id"] != "0a0b0c01" and len(cfg["identity_key"]) == 128
    cfg, _ = make_config({}, NET, {}, "n", node_id=0x0A0B0C01)   # --node-id: none
    assert cfg["node_id"] == "0a0b0c01" and "identity_key" not in cfg


def test_the_hosts_backup_of_an_identity_is_its_users_only(tmp_path, monkeypatch):
    import os
    import stat
    from pollen_controller.board.identity_backup import save_backup
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    cfg, _ = make_config({}, NET, {}, "n")
    path = save_backup(cfg)
    assert path.parent == tmp_path / "pollen" / "identities"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert cfg["identity_key"] in path.read_text()
