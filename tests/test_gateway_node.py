"""The gateway's node through its port going away and coming back
(controller/gateway/attached_node.py), on a fake node's console behind a pty."""
import time

import pytest
from fakes.fake_console_node import FakeConsoleNode

from pollen_controller.gateway.attached_node import AttachedNode
from pollen_controller.node.link import Link, LinkError, SerialLink


def poll_until(node, pred, timeout_s=15):
    seen = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for ev in node.poll(0.05):
            seen.append(ev)
            if pred(ev):
                return seen
    raise AssertionError(f"not seen; got {seen}")


def test_away_then_back_as_another_node(tmp_path):
    fake = FakeConsoleNode(tmp_path).plug()
    said = []
    node = AttachedNode(SerialLink(fake.path), said.append, first_delay_s=0.2, max_delay_s=0.5)
    try:
        assert node.up and node.id == "0000000a"
        fake.unplug()
        seen = poll_until(node, lambda e: e["event"] == "_away")
        assert not node.up and "went away" in seen[-1]["error"]
        assert node.command({"cmd": "status"}) is False  # not written anywhere
        time.sleep(1)  # tries meanwhile fail, said once
        assert node.poll(0.05) == [] and sum("trying again" in s for s in said) == 1
        fake.id = "0000000b"  # another board on the same port
        fake.plug()
        seen = poll_until(node, lambda e: e["event"] == "status")
        assert [e["event"] for e in seen] == ["_back", "status"]
        assert seen[0] == {"event": "_back", "id": "0000000b", "was": "0000000a"}
        assert node.up and node.id == "0000000b" and "it was 0000000a" in said[-1]
    finally:
        node.link.close()
        fake.unplug()


class _Gone(Link):
    # a link that cannot be opened again (like an emulated node that stopped)
    def __init__(self):
        super().__init__()
        self.events.put({"event": "status", "id": "00000001", "ref": "h1"})

    def command(self, cmd):
        pass

    def _check_alive(self):
        if self._ref > 1:
            raise LinkError("node 00000001 stopped")


def test_a_link_that_cannot_be_opened_again_ends_it():
    node = AttachedNode(_Gone())
    node.link.new_ref()
    with pytest.raises(LinkError, match="stopped"):
        node.poll(0.05)
