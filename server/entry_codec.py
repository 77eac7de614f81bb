"""The bytes of a log entry: a ``Proposal`` as an ``internalpb.InternalRequest``.

Every entry the WAL (and later raft) carries is one ``InternalRequest``: the waiter's
request id and exactly one request of the oneof. Encoding writes the protobuf wire form
by hand, so a request is serialized once and never copied into a wrapper message; the
result is byte-for-byte what ``InternalRequest(id=..., put=...).SerializeToString()``
gives, and decoding uses the generated class.

Example::

    data = encode(Proposal(7, PutRequest(key=b"k", value=b"v")))
    data                      # b'\\x08\\x07\\x12\\x06\\n\\x01k\\x12\\x01v'
    decode(data)              # Proposal(id=7, request=PutRequest(key=b"k", value=b"v"))

Invariant: ``decode(encode(p)) == p`` for every request type the applier knows; a type
without a field in ``InternalRequest`` cannot be proposed (``KeyError`` at encode).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from etcdlite.protos.internal_pb2 import InternalRequest
from etcdlite.server.apply import Proposal
from etcdlite.storage.errors import CorruptStore

_ONEOF = InternalRequest.DESCRIPTOR.oneofs_by_name["request"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAG_BY_TYPE: dict[str, bytes] = {
    f.message_type.full_name: _varint((f.number << 3) | 2) for f in _ONEOF.fields
}
"""Request message full name -> the wire tag of its field in InternalRequest."""


def encode(p: Proposal) -> bytes:
    body = p.request.SerializeToString()
    tag = _TAG_BY_TYPE[p.request.DESCRIPTOR.full_name]
    head = b"\x08" + _varint(p.id) if p.id else b""
    return b"".join((head, tag, _varint(len(body)), body))


def decode(data: bytes) -> Proposal:
    """The proposal an entry carries; undecodable data is a corrupt log."""
    msg = InternalRequest()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise CorruptStore(f"undecodable log entry: {exc}") from exc
    which = msg.WhichOneof("request")
    if which is None:
        raise CorruptStore("log entry without a request")
    request: Message = getattr(msg, which)
    return Proposal(msg.id, request)
