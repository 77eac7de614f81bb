"""The bytes of a log entry: a ``Proposal`` as an ``internalpb.InternalRequest``.

Every entry the WAL (and later raft) carries is one ``InternalRequest``: the waiter's
request id, the caller's identity (``username``, ``auth_revision``; only while auth is
enabled) and exactly one request of the oneof. Encoding writes the protobuf wire form by
hand, so a request is serialized once and never copied into a wrapper message; the
result is byte-for-byte what ``InternalRequest(...).SerializeToString()`` gives (fields in
number order: the identity fields 10 and 11 go after a request numbered below 10 and
before one numbered above), and decoding uses the generated class.

Example::

    data = encode(Proposal(7, PutRequest(key=b"k", value=b"v")))
    data                      # b'\\x08\\x07\\x12\\x06\\n\\x01k\\x12\\x01v'
    decode(data)              # Proposal(id=7, request=PutRequest(key=b"k", value=b"v"))
    encode(Proposal(7, PutRequest(key=b"k"), username="al", auth_revision=5))
    # b'\\x08\\x07\\x12\\x03\\n\\x01k' + b'R\\x02al' + b'X\\x05'   (id, put, 10, 11)

Invariants: ``decode(encode(p)) == p`` for every request type the applier knows; a type
without a field in ``InternalRequest`` cannot be proposed (``KeyError`` at encode); an
entry without identity costs nothing more than before (no bytes, one truth test).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from etcdlite.protos.internal_pb2 import InternalRequest
from etcdlite.server.apply import Proposal
from etcdlite.storage.errors import CorruptStore

_ONEOF = InternalRequest.DESCRIPTOR.oneofs_by_name["request"]
_FIELDS = InternalRequest.DESCRIPTOR.fields_by_name
_USERNAME_NUMBER = _FIELDS["username"].number
_AUTH_REVISION_NUMBER = _FIELDS["auth_revision"].number


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_USERNAME_TAG = _varint((_USERNAME_NUMBER << 3) | 2)
_AUTH_REVISION_TAG = _varint(_AUTH_REVISION_NUMBER << 3)

_TAG_BY_TYPE: dict[str, tuple[bytes, bool]] = {
    f.message_type.full_name: (_varint((f.number << 3) | 2), f.number < _USERNAME_NUMBER)
    for f in _ONEOF.fields
}
"""Request message full name -> (the wire tag of its field in InternalRequest, whether
that field's number is below the identity fields', i.e. the request is written first)."""


def _identity(p: Proposal) -> bytes:
    out = b""
    if p.username:
        name = p.username.encode()
        out = _USERNAME_TAG + _varint(len(name)) + name
    if p.auth_revision:
        out += _AUTH_REVISION_TAG + _varint(p.auth_revision)
    return out


def encode(p: Proposal) -> bytes:
    body = p.request.SerializeToString()
    tag, request_first = _TAG_BY_TYPE[p.request.DESCRIPTOR.full_name]
    head = b"\x08" + _varint(p.id) if p.id else b""
    if not p.username and not p.auth_revision:
        return b"".join((head, tag, _varint(len(body)), body))
    ident = _identity(p)
    if request_first:
        return b"".join((head, tag, _varint(len(body)), body, ident))
    return b"".join((head, ident, tag, _varint(len(body)), body))


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
    return Proposal(msg.id, request, msg.username, msg.auth_revision)
