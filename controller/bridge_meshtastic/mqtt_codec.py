"""Meshtastic's MQTT uplink and downlink, as pure functions: a ServiceEnvelope
(the `meshtastic` package's protobuf classes) in, a text, a node's names or
a drop reason out; a text in, an envelope out. No IO (docs/meshtastic.md,
"MQTT"). What the firmware does, read in meshtastic/firmware (2.8 dev,
July 2026; the same in 2.3 .. 2.7):

  topics      ROOT/2/e/CHANNEL/!GATEWAY (src/mqtt/MQTT.h cryptTopic "/2/e/";
              "/2/c/" before 2.3.0), ROOT "msh" or "msh/REGION" once a
              region is set (src/modules/AdminModule.cpp)
  envelope    mqtt.proto ServiceEnvelope {packet, channel_id (the channel's
              name), gateway_id ("!%08x" of the publishing node)}
  key         src/mesh/Channels.cpp Channels::getKey: a PSK of 0 bytes is
              no encryption; 1 byte is an index: 0 none, N the default key
              with N - 1 added to its last byte; 16 bytes AES-128, 32 AES-256
  hash        Channels::generateHash: XOR of the name's bytes and the
              expanded key's bytes: MeshPacket.channel on the air
  cipher      src/mesh/CryptoEngine.cpp encryptPacket / initNonce /
              encryptAESCtr: AES-CTR, the counter block the packet id as
              64-bit little-endian, the sender's node number 32-bit
              little-endian, 4 zero bytes (the 32-bit big-endian counter)
  valid       src/mesh/Router.cpp perhapsDecode: a packet "decrypts" when
              the plaintext parses as a Data whose portnum is not 0
  PKI         a direct message (firmware 2.5 on) is encrypted to its
              destination's key, on topic ROOT/2/e/PKI/!GATEWAY with
              channel_id "PKI" (MQTT.cpp): CryptoEngine encryptCurve25519 /
              decryptCurve25519: the key SHA-256 of X25519(own private key,
              the other's public key, from its User.public_key); AES-256-CCM
              with an 8-byte tag, no associated data; the 13-byte nonce the
              packet id's low 32 bits little-endian, a random 32-bit extra
              nonce, the sender's number little-endian, a zero byte
              (initNonce); on the wire ciphertext, tag, extra nonce
              (MESHTASTIC_PKC_OVERHEAD 12)
"""
from __future__ import annotations

import base64
import binascii
import struct

from pollen_controller.errors import InputError

BROADCAST = 0xFFFFFFFF
# src/mesh/Channels.h defaultpsk: the public key of the default channel
DEFAULT_PSK = bytes.fromhex("d4f1bb3a20290759f0bcffabcf4e6901")
HOP_LIMIT = 3                 # src/mesh/MeshTypes.h HOP_RELIABLE, the default hop limit
MAX_CHANNEL_NAME_BYTES = 11   # channel.options: ChannelSettings.name max_size 12 (with its NUL)
MAX_PACKET_BYTES = 256        # MeshPacket.encrypted max_size (Router.cpp: larger is not decrypted)
_NODE_RESERVED = 4            # node numbers 0..3 are reserved (NodeDB.h NUM_RESERVED)
PKI_CHANNEL = "PKI"           # the channel_id (and topic level) of PKI-encrypted direct messages
PKC_OVERHEAD = 12             # RadioInterface.h MESHTASTIC_PKC_OVERHEAD: tag 8, extra nonce 4


def parse_key(value: str) -> bytes:
    """--key default | none | BASE64 (of 1, 16 or 32 bytes) -> the channel's
    key as the firmware expands it (b"" for none); InputError naming it."""
    v = (value or "").strip()
    if v.lower() == "default":
        return expand_psk(b"\x01")
    if v.lower() == "none":
        return b""
    try:
        psk = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"--key {value!r}: expected default, none or the channel's key in base64"
                         f" (as the Meshtastic app shows it, e.g. AQ==)") from None
    if len(psk) not in (1, 16, 32):
        raise InputError(f"--key {value!r}: {len(psk)} bytes; expected 16 or 32 (AES-128 or"
                         f" AES-256), or 1 (an index to the default key, AQ== being the default)")
    return expand_psk(psk)


def expand_psk(psk: bytes) -> bytes:
    """A channel's PSK as Channels::getKey uses it."""
    if len(psk) == 1:
        if psk[0] == 0:
            return b""
        return DEFAULT_PSK[:-1] + bytes([(DEFAULT_PSK[-1] + psk[0] - 1) & 0xFF])
    if len(psk) not in (0, 16, 32):
        raise InputError(f"a channel key of {len(psk)} bytes: expected 0, 1, 16 or 32")
    return psk


def check_channel(name: str) -> str:
    """--channel NAME for MQTT: the channel's name, as in the topic."""
    if not name or any(c in name for c in "/+#\0"):
        raise InputError(f"--channel {name!r}: expected a Meshtastic channel name (e.g. LongFast),"
                         f" one topic level (no '/', '+' or '#')")
    if len(name.encode()) > MAX_CHANNEL_NAME_BYTES:
        raise InputError(f"--channel {name!r}: at most {MAX_CHANNEL_NAME_BYTES} bytes, as the"
                         f" firmware keeps a channel's name")
    return name


def parse_node(value: str) -> int:
    """--mqtt-node !xxxxxxxx -> the node number; InputError naming it."""
    digits = value.strip().lower()
    digits = digits[1:] if digits.startswith("!") else digits
    if not (1 <= len(digits) <= 8 and all(c in "0123456789abcdef" for c in digits)) \
            or not _NODE_RESERVED <= int(digits, 16) < BROADCAST:
        raise InputError(f"--mqtt-node {value!r}: expected ! and 8 hex digits, a node number"
                         f" other than 0..3 and ffffffff (e.g. !b1d9e0a7)")
    return int(digits, 16)


def node_for(pollen_id: str) -> int:
    """The bridge's own Meshtastic node number when none is given: from its
    pollen node's id, so the same bridge keeps the same number."""
    import hashlib

    n = int.from_bytes(hashlib.sha256(b"pollen bridge " + pollen_id.encode()).digest()[:4], "big")
    return n if _NODE_RESERVED <= n < BROADCAST else n ^ 0x80000000


def channel_hash(name: str, key: bytes) -> int:
    """Channels::generateHash: what MeshPacket.channel says on the air."""
    h = 0
    for b in name.encode() + key:
        h ^= b
    return h


def crypt(key: bytes, packet_id: int, from_num: int, data: bytes) -> bytes:
    """AES-CTR as CryptoEngine::encryptPacket (encrypting and decrypting are
    the same); the data itself when the key is empty (no encryption)."""
    if not key:
        return bytes(data)
    nonce = struct.pack("<QI", packet_id & 0xFFFFFFFFFFFFFFFF, from_num & 0xFFFFFFFF) + bytes(4)
    return aes_ctr(key, nonce, data)


def aes_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES-CTR with a 16-byte initial counter block (RFC 3686 vectors)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    return enc.update(data) + enc.finalize()


def pki_shared_key(private_key: bytes, public_key: bytes) -> bytes | None:
    """The key of direct messages between two nodes (CryptoEngine setDHPublicKey,
    hash): SHA-256 of their X25519 shared secret; None for a key that is not
    one (wrong length, or a weak one giving a zero secret)."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    if len(private_key) != 32 or len(public_key) != 32:
        return None
    try:
        shared = X25519PrivateKey.from_private_bytes(private_key).exchange(
            X25519PublicKey.from_public_bytes(public_key))
    except ValueError:        # (a low-order public key: an all-zero secret)
        return None
    return hashlib.sha256(shared).digest()


def _pki_nonce(packet_id: int, from_num: int, extra: bytes) -> bytes:
    return struct.pack("<I", packet_id & 0xFFFFFFFF) + extra + struct.pack("<I", from_num & 0xFFFFFFFF) + b"\0"


def pki_decrypt(shared_key: bytes, packet_id: int, from_num: int, encrypted: bytes) -> bytes | None:
    """A PKI-encrypted packet's Data bytes; None when it does not authenticate."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    if len(encrypted) <= PKC_OVERHEAD:
        return None
    body, extra = encrypted[:-4], encrypted[-4:]
    try:
        return AESCCM(shared_key, tag_length=8).decrypt(_pki_nonce(packet_id, from_num, extra), body, None)
    except (InvalidTag, ValueError):
        return None


def pki_encrypt(shared_key: bytes, packet_id: int, from_num: int, data: bytes,
                extra: bytes | None = None) -> bytes:
    """Data bytes PKI-encrypted as encryptCurve25519 does (extra: the 4-byte
    extra nonce, random when not given)."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    extra = os.urandom(4) if extra is None else extra
    return AESCCM(shared_key, tag_length=8).encrypt(_pki_nonce(packet_id, from_num, extra), data,
                                                    None) + extra


# ---- receiving ------------------------------------------------------------------------

class Heard:
    """What one envelope said: kind "text" (text), "user" (short/long name)
    or a drop reason (why) with the port's name for an ignored port."""

    __slots__ = ("why", "kind", "from_num", "to", "packet_id", "gateway", "text", "short", "long",
                 "reply_id", "public_key", "pki")

    def __init__(self, why=None, kind=None, from_num=0, to=BROADCAST, packet_id=0, gateway="",
                 text=None, short=None, long=None):
        self.why, self.kind, self.from_num, self.to = why, kind, from_num, to
        self.packet_id, self.gateway, self.text, self.short, self.long = packet_id, gateway, text, short, long
        self.reply_id = 0   # Data.reply_id: the packet this one answers
        self.public_key = b""   # a node info's User.public_key
        self.pki = False        # a direct message decrypted with our key


def read_envelope(payload: bytes, channel: str, key: bytes, pki_key=None) -> Heard:
    """An MQTT payload from ROOT/2/e/CHANNEL/... -> Heard. why is one of
    undecodable (not a protobuf), not_envelope (a protobuf, not a
    ServiceEnvelope with a packet: a foreign message), too_big (over the
    256 bytes a packet holds), other_channel,
    pki (a direct message encrypted to one node: unreadable here),
    wrong_key (the hash or the decryption says it is not our key),
    plaintext (an unencrypted packet on a channel with a key: refused, as
    the firmware refuses a decoded downlink while MQTT encryption is on),
    not_utf8, or "port:NAME" for a port the bridge ignores. pki_key(from,
    to): the key of a direct message from `from` to `to` if this bridge
    can read it (it is `to`, and knows the sender's public key), else None:
    such a message is read (pki True), others are "pki"."""
    from google.protobuf.message import DecodeError
    from meshtastic.protobuf import mesh_pb2, mqtt_pb2, portnums_pb2

    env = mqtt_pb2.ServiceEnvelope()
    try:
        env.ParseFromString(bytes(payload))
    except (DecodeError, TypeError, ValueError, RecursionError):
        return Heard("undecodable")
    p = env.packet
    variant = p.WhichOneof("payload_variant") if env.HasField("packet") else None
    # as the firmware's DecodedServiceEnvelope: a channel, a gateway and a
    # packet, which has an id and a sender (a foreign protobuf rarely has all)
    if not env.channel_id or not env.gateway_id or variant is None or not p.id \
            or not getattr(p, "from"):
        return Heard("not_envelope")
    heard = Heard(from_num=getattr(p, "from"), to=p.to, packet_id=p.id, gateway=env.gateway_id)
    if env.channel_id == PKI_CHANNEL:
        shared = pki_key(heard.from_num, p.to) if pki_key is not None and variant == "encrypted" \
            else None
        plain = pki_decrypt(shared, p.id, heard.from_num, p.encrypted) if shared else None
        data = mesh_pb2.Data()
        try:
            data.ParseFromString(plain or b"")
        except (DecodeError, ValueError, RecursionError):
            plain = None
        if not plain or data.portnum == portnums_pb2.PortNum.UNKNOWN_APP:
            heard.why = "pki"
            return heard
        heard.pki = True
        return _read_data(heard, data)
    if env.channel_id != channel:
        heard.why = "other_channel"
        return heard
    if variant == "decoded":
        if key:
            heard.why = "plaintext"
            return heard
        data = p.decoded
    else:
        if len(p.encrypted) > MAX_PACKET_BYTES:
            heard.why = "too_big"        # Router.cpp: "Packet too large to attempt decryption!"
            return heard
        if p.channel != channel_hash(channel, key):
            heard.why = "wrong_key"
            return heard
        data = mesh_pb2.Data()
        try:
            data.ParseFromString(crypt(key, p.id, heard.from_num, p.encrypted))
        except (DecodeError, ValueError, RecursionError):
            heard.why = "wrong_key"
            return heard
        if data.portnum == portnums_pb2.PortNum.UNKNOWN_APP:
            heard.why = "wrong_key"
            return heard
    return _read_data(heard, data)


def _read_data(heard: Heard, data) -> Heard:
    from google.protobuf.message import DecodeError
    from meshtastic.protobuf import mesh_pb2, portnums_pb2

    if data.portnum == portnums_pb2.PortNum.TEXT_MESSAGE_APP:
        try:
            heard.kind, heard.text = "text", data.payload.decode("utf-8")
        except UnicodeDecodeError:
            heard.why = "not_utf8"
        return heard
    heard.reply_id = data.reply_id
    if data.portnum == portnums_pb2.PortNum.PRIVATE_APP:
        # a bridge on a device says "pollen bridge ID" in this port (device.py announce)
        from pollen_controller.bridge_meshtastic.relay import bridge_in_name

        pollen_id = bridge_in_name(data.payload.decode("utf-8", errors="replace"))
        if pollen_id is not None:
            heard.kind, heard.long = "bridge", pollen_id
            return heard
    if data.portnum == portnums_pb2.PortNum.NODEINFO_APP:
        user = mesh_pb2.User()
        try:
            user.ParseFromString(data.payload)
        except (DecodeError, ValueError, RecursionError):
            heard.why = "port:NODEINFO_APP"
            return heard
        heard.kind, heard.short, heard.long = "user", user.short_name, user.long_name
        heard.public_key = bytes(user.public_key)
        return heard
    heard.why = "port:" + _port_name(data.portnum)
    return heard


def _port_name(num: int) -> str:
    from meshtastic.protobuf import portnums_pb2

    try:
        return portnums_pb2.PortNum.Name(num)
    except ValueError:
        return str(num)


# ---- sending ----------------------------------------------------------------------------

def envelope(channel: str, key: bytes, from_num: int, packet_id: int, portnum: int, payload: bytes,
             to: int = BROADCAST, reply_id: int = 0) -> bytes:
    """A packet from the bridge's own node as a gateway would uplink it: a
    ServiceEnvelope (gateway_id the bridge's own node) around a MeshPacket
    encrypted with the channel's key, hop limit and start the firmware's default."""
    from meshtastic.protobuf import mesh_pb2, mqtt_pb2

    data = mesh_pb2.Data(portnum=portnum, payload=payload, reply_id=reply_id).SerializeToString()
    packet = mesh_pb2.MeshPacket(to=to, channel=channel_hash(channel, key), id=packet_id,
                                 hop_limit=HOP_LIMIT, hop_start=HOP_LIMIT,
                                 encrypted=crypt(key, packet_id, from_num, data))
    setattr(packet, "from", from_num)   # a keyword in Python
    return mqtt_pb2.ServiceEnvelope(packet=packet, channel_id=channel,
                                    gateway_id=f"!{from_num:08x}").SerializeToString()


def pki_text_envelope(shared_key: bytes, from_num: int, to: int, packet_id: int, text: str) -> bytes:
    """A direct message from the bridge's own node, PKI-encrypted to its
    destination (shared_key: pki_shared_key of ours and its), as a gateway
    uplinks one: channel_id PKI, MeshPacket.channel 0, pki_encrypted."""
    from meshtastic.protobuf import mesh_pb2, mqtt_pb2, portnums_pb2

    data = mesh_pb2.Data(portnum=portnums_pb2.PortNum.TEXT_MESSAGE_APP,
                         payload=text.encode("utf-8")).SerializeToString()
    packet = mesh_pb2.MeshPacket(to=to, channel=0, id=packet_id, hop_limit=HOP_LIMIT,
                                 hop_start=HOP_LIMIT, pki_encrypted=True,
                                 encrypted=pki_encrypt(shared_key, packet_id, from_num, data))
    setattr(packet, "from", from_num)
    return mqtt_pb2.ServiceEnvelope(packet=packet, channel_id=PKI_CHANNEL,
                                    gateway_id=f"!{from_num:08x}").SerializeToString()


def text_envelope(channel: str, key: bytes, from_num: int, packet_id: int, text: str) -> bytes:
    from meshtastic.protobuf import portnums_pb2

    return envelope(channel, key, from_num, packet_id, portnums_pb2.PortNum.TEXT_MESSAGE_APP,
                    text.encode("utf-8"))


def nodeinfo_envelope(channel: str, key: bytes, from_num: int, packet_id: int, long_name: str,
                      short_name: str, reply_id: int = 0, public_key: bytes = b"") -> bytes:
    """The bridge's own NODEINFO_APP (a User), as every node broadcasts its
    own every 3 hours (src/mesh/Default.h default_node_info_broadcast_secs);
    reply_id: the node info it answers (another bridge's), 0 for none."""
    from meshtastic.protobuf import mesh_pb2, portnums_pb2

    user = mesh_pb2.User(id=f"!{from_num:08x}", long_name=long_name, short_name=short_name,
                         hw_model=mesh_pb2.HardwareModel.PRIVATE_HW, public_key=public_key)
    return envelope(channel, key, from_num, packet_id, portnums_pb2.PortNum.NODEINFO_APP,
                    user.SerializeToString(), reply_id=reply_id)
