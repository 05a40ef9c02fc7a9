"""The MQTT side the gateway and the monitor share: a broker URL read, and a
paho-mqtt client set up as both use it (docs/gateway.md)."""
from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

from pollen_controller.errors import GatewayError, MqttUrlError

PROBE_TIMEOUT_S = 5.0


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise MqttUrlError(f"--mqtt: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError:
        raise MqttUrlError(f"--mqtt: the port in {url!r} is not a number 1..65535") from None
    return u.hostname, port, tls


def mqtt_json(body) -> str:
    """A publication's payload: JSON with text as UTF-8 (emoji readable in
    mosquitto_sub), or \\u escapes where it cannot be encoded (a lone surrogate)."""
    out = json.dumps(body, ensure_ascii=False)
    try:
        out.encode("utf-8")
        return out
    except UnicodeEncodeError:
        return json.dumps(body)


# an MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s, client id "pollen-probe"
_PROBE_CONNECT = (b"\x10\x18\x00\x04MQTT\x04\x02\x00\x0a"
                  b"\x00\x0cpollen-probe")
_CONNACK = 0x20


def probe_broker(url: str, timeout_s: float = PROBE_TIMEOUT_S, hint: str = ""):
    """Whether the broker at url can be reached now: a TCP connection and,
    without TLS, an MQTT CONNECT answered by a CONNACK (whatever its code: a
    broker that wants a password still is one), so that a port with another
    service behind it (a web server, a typo) is told at once, not after a
    silent wait. GatewayError naming the URL and why not (no such host,
    refused, no answer within timeout_s, not MQTT), then hint."""
    host, port, tls = parse_mqtt_url(url)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            if tls:
                return   # the TLS handshake is paho's; a connection is what is checked here
            s.sendall(_PROBE_CONNECT)
            try:
                first = s.recv(64)
            except TimeoutError:
                raise GatewayError(f"--mqtt {url}: {host}:{port} takes connections but did not "
                                   f"answer as an MQTT broker within {timeout_s:g} s (another "
                                   f"service on that port?){hint}") from None
            if not first or first[0] != _CONNACK:
                said = first[:40].decode("ascii", "backslashreplace") if first else "nothing"
                raise GatewayError(f"--mqtt {url}: {host}:{port} answered, but not as an MQTT "
                                   f"broker (it said {said!r}){hint}")
            s.sendall(b"\xe0\x00")   # DISCONNECT: the probe's session ends cleanly
    except socket.gaierror as e:
        raise GatewayError(f"--mqtt {url}: no such host {host!r} ({e.strerror}){hint}") from None
    except TimeoutError:
        raise GatewayError(f"--mqtt {url}: the broker did not answer within {timeout_s:g} s{hint}") from None
    except OSError as e:
        raise GatewayError(f"--mqtt {url}: cannot reach the broker ({e.strerror or e}){hint}") from None


def mqtt_client(client_id: str, clean_session: bool, username=None, password=None,
                tls: bool = False, manual_ack: bool = False):
    """A paho-mqtt 2.x client as pollen uses it (gateway and monitor): MQTT
    3.1.1, credentials and TLS if given, reconnecting with a back-off from 1
    to 30 s. With manual_ack a QoS 1 message is acknowledged only by
    client.ack(mid, qos), not when on_message returns."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, manual_ack=manual_ack)
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
