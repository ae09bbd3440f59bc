"""Confidential model files: envelope encryption with hybrid SM9-KEM + ML-KEM-768 key wrapping.

``seal_file``/``open_file`` (and their stream forms) encrypt a file of any size for a list of
recipients with a fresh content key, chunked AEAD (AES-256-GCM or SM4-GCM) and a header that binds
every parameter; see docs/crypto.md for the byte format and the constructions.
"""

from __future__ import annotations

from fedledger.envelope.errors import (
    EnvelopeAccessError,
    EnvelopeError,
    EnvelopeFormatError,
    EnvelopeIntegrityError,
    EnvelopeKeyError,
)
from fedledger.envelope.recipients import Recipient, RecipientKeys
from fedledger.envelope.stream import (
    DEFAULT_AEAD,
    DEFAULT_CHUNK_SIZE,
    SealInfo,
    open_chunks,
    open_file,
    open_stream,
    recipients_of,
    seal_file,
    seal_pieces,
    seal_stream,
    sealed_reader,
)

__all__ = [
    "DEFAULT_AEAD",
    "DEFAULT_CHUNK_SIZE",
    "EnvelopeAccessError",
    "EnvelopeError",
    "EnvelopeFormatError",
    "EnvelopeIntegrityError",
    "EnvelopeKeyError",
    "Recipient",
    "RecipientKeys",
    "SealInfo",
    "open_chunks",
    "open_file",
    "open_stream",
    "recipients_of",
    "seal_file",
    "seal_pieces",
    "seal_stream",
    "sealed_reader",
]
