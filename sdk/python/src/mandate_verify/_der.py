"""A strict DER reader and a minimal DER writer, enough for the delegation extension.

The reader refuses everything DER forbids and BER allows: indefinite lengths, lengths in long
form that fit the short form or carry leading zero bytes, high tag numbers, integers with
redundant leading bytes, and bytes after the end of a value. It mirrors the strictness of the
`der` crate that `core/src/delegation/asn1.rs` uses.
"""

from __future__ import annotations

import calendar
import time

__all__ = ["DerError", "Reader", "tlv", "integer", "generalized_time", "parse_generalized_time"]

# Universal tags used by the delegation extension.
INTEGER = 0x02
ENUMERATED = 0x0A
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
# Context-specific, constructed ([0], [1], [2] under IMPLICIT TAGS of a SEQUENCE).
CONTEXT_0 = 0xA0
CONTEXT_1 = 0xA1
CONTEXT_2 = 0xA2

_PRINTABLE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)


class DerError(ValueError):
    """The bytes are not the DER this codec expects."""


class Reader:
    """Reads TLVs from one level of DER content, in order."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    def at_end(self) -> bool:
        """True when every byte of this level has been read."""
        return self._pos >= len(self._data)

    def peek_tag(self) -> int | None:
        """The tag of the next TLV, or None at the end."""
        return None if self.at_end() else self._data[self._pos]

    def read(self, tag: int, what: str) -> bytes:
        """Reads the next TLV, which must carry `tag`, and returns its content."""
        data, pos = self._data, self._pos
        if pos >= len(data):
            raise DerError(f"{what}: missing (end of data)")
        got = data[pos]
        if got & 0x1F == 0x1F:
            raise DerError(f"{what}: high tag numbers are not used here")
        if got != tag:
            raise DerError(f"{what}: expected tag 0x{tag:02x}, found 0x{got:02x}")
        pos += 1
        if pos >= len(data):
            raise DerError(f"{what}: truncated length")
        first = data[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif first == 0x80:
            raise DerError(f"{what}: indefinite length is not DER")
        else:
            count = first & 0x7F
            if count > 4:
                raise DerError(f"{what}: length of {count} bytes is too long")
            raw = data[pos : pos + count]
            if len(raw) != count:
                raise DerError(f"{what}: truncated length")
            pos += count
            if raw[0] == 0:
                raise DerError(f"{what}: length has a leading zero byte (not DER)")
            length = int.from_bytes(raw, "big")
            if length < 0x80:
                raise DerError(f"{what}: long-form length {length} must be short form (not DER)")
        end = pos + length
        if end > len(data):
            raise DerError(f"{what}: length {length} runs past the end of the data")
        self._pos = end
        return data[pos:end]

    def finish(self, what: str) -> None:
        """Fails when bytes remain at this level."""
        if not self.at_end():
            raise DerError(f"{what}: {len(self._data) - self._pos} trailing bytes")

    def read_integer(self, what: str, low: int, high: int, tag: int = INTEGER) -> int:
        """Reads a minimally encoded INTEGER (or ENUMERATED) within `low..=high`."""
        content = self.read(tag, what)
        if not content:
            raise DerError(f"{what}: empty integer")
        if len(content) > 1 and (
            (content[0] == 0x00 and content[1] < 0x80)
            or (content[0] == 0xFF and content[1] >= 0x80)
        ):
            raise DerError(f"{what}: integer has a redundant leading byte (not DER)")
        value = int.from_bytes(content, "big", signed=True)
        if not low <= value <= high:
            raise DerError(f"{what}: {value} is outside {low}..{high}")
        return value

    def read_utf8(self, what: str) -> str:
        """Reads a UTF8String."""
        try:
            return self.read(UTF8_STRING, what).decode("utf-8", errors="strict")
        except UnicodeDecodeError as error:
            raise DerError(f"{what}: not valid UTF-8 ({error.reason})") from None

    def read_printable(self, what: str) -> str:
        """Reads a PrintableString."""
        content = self.read(PRINTABLE_STRING, what)
        if any(b not in _PRINTABLE for b in content):
            raise DerError(f"{what}: character outside PrintableString")
        return content.decode("ascii")

    def read_ia5(self, what: str) -> str:
        """Reads an IA5String (ASCII)."""
        content = self.read(IA5_STRING, what)
        if any(b > 0x7F for b in content):
            raise DerError(f"{what}: character outside IA5String")
        return content.decode("ascii")

    def read_time(self, what: str) -> int:
        """Reads a GeneralizedTime `YYYYMMDDHHMMSSZ` as unix seconds."""
        return parse_generalized_time(self.read(GENERALIZED_TIME, what), what)


def parse_generalized_time(content: bytes, what: str) -> int:
    """Unix seconds of a DER GeneralizedTime in UTC with whole seconds, 1970 to 9999."""
    if len(content) != 15 or content[14:] != b"Z" or not content[:14].isdigit():
        raise DerError(f"{what}: GeneralizedTime must be YYYYMMDDHHMMSSZ")
    text = content.decode("ascii")
    year, month, day = int(text[0:4]), int(text[4:6]), int(text[6:8])
    hour, minute, second = int(text[8:10]), int(text[10:12]), int(text[12:14])
    if not 1970 <= year <= 9999 or not 1 <= month <= 12:
        raise DerError(f"{what}: date out of range")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise DerError(f"{what}: day out of range")
    if hour > 23 or minute > 59 or second > 59:
        raise DerError(f"{what}: time of day out of range")
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def generalized_time(unix_seconds: int) -> bytes:
    """The DER GeneralizedTime TLV of `unix_seconds` (1970 to 9999)."""
    if not 0 <= unix_seconds <= 253402300799:
        raise DerError("time out of range for GeneralizedTime")
    t = time.gmtime(unix_seconds)
    text = (
        f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}Z"
    )
    return tlv(GENERALIZED_TIME, text.encode("ascii"))


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV with a minimal definite length."""
    length = len(content)
    if length < 0x80:
        head = bytes([tag, length])
    else:
        raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
        head = bytes([tag, 0x80 | len(raw)]) + raw
    return head + content


def integer(value: int, tag: int = INTEGER) -> bytes:
    """A minimally encoded INTEGER (or ENUMERATED) TLV."""
    magnitude = value if value >= 0 else ~value
    size = (magnitude.bit_length() + 8) // 8
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def split_concatenated(data: bytes) -> list[bytes]:
    """Splits concatenated DER values (a Workload API bundle) into whole TLVs."""
    out = []
    rest = bytes(data)
    while rest:
        reader = Reader(rest)
        reader.read(rest[0], "concatenated DER value")
        size = reader._pos
        out.append(rest[:size])
        rest = rest[size:]
    return out
