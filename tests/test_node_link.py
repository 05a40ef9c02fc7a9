"""SerialLink on a port that goes away and comes back: a fake node's console
on a pseudo-terminal behind a path (tests/fakes/fake_console_node.py)."""
import pytest
from fakes.fake_console_node import FakeConsoleNode

from pollen_controller.node.link import LinkError, SerialLink


def test_a_port_that_goes_away_raises_until_it_is_opened_again(tmp_path):
    node = FakeConsoleNode(tmp_path).plug()
    link = SerialLink(node.path)
    try:
        assert link.ask({"cmd": "status"}, "status", timeout_s=5)["id"] == "0000000a"
        node.unplug()
        with pytest.raises(LinkError, match="went away"):
            link.wait(lambda e: False, timeout_s=5)
        with pytest.raises(LinkError, match="went away"):
            link.command({"cmd": "status"})
        with pytest.raises(LinkError, match="cannot open the port"):
            link.reopen()
        node.plug()
        link.reopen()
        node.emit({"event": "received", "text": "back"})
        assert link.wait(lambda e: e.get("text") == "back", timeout_s=5)
        assert link.ask({"cmd": "status"}, "status", timeout_s=5)["id"] == "0000000a"
    finally:
        link.close()
        node.unplug()


def test_a_port_that_is_not_there_is_named(tmp_path):
    with pytest.raises(LinkError, match="ttyNOPE: cannot open the port"):
        SerialLink(str(tmp_path / "ttyNOPE"))


def test_a_node_that_does_not_answer_is_named_by_its_port(tmp_path):
    # `pollen info --port P` on a board whose app is not running said only
    # "the node did not answer within 10 s", not which port
    from pollen_controller.errors import LinkTimeout

    node = FakeConsoleNode(tmp_path).plug()
    link = SerialLink(node.path)
    try:
        with pytest.raises(LinkTimeout, match=f"^{node.path}: the node did not answer within 1 s"):
            link.wait(lambda e: False, timeout_s=1)
    finally:
        link.close()
        node.unplug()
