"""Timestamp conversion: strict ISO-8601 detection, epoch event times, Avro logical types.

Pure module: stdlib only, no I/O, no clock, no global mutable state, and the result never
depends on the host's time zone (all arithmetic is integer arithmetic in UTC).

ISO-8601 strings ("Convert Timestamps")
---------------------------------------
A string is converted only when it *fully* matches the ISO-8601 **extended** calendar format::

    YYYY-MM-DD
    YYYY-MM-DDThh:mm[:ss[.f{1,9}]][Z|±hh:mm|±hhmm]

* The separator is an upper-case ``T`` and the UTC designator an upper-case ``Z``.  A lower-case
  ``t``/``z`` or a space separator (RFC 3339 / SQL style) is *not* accepted: such strings are left
  unchanged, so that only unambiguous ISO-8601 extended values are rewritten.
* The fraction needs seconds, has 1 to 9 digits (nanoseconds) and uses ``.`` or ``,`` (ISO-8601
  allows both decimal signs).  Ten or more digits: unchanged.
* An offset is accepted only after a time (a date alone has no offset; ``2023-03-28Z`` is left
  unchanged).  ``±hh`` alone is not accepted.
* Digits are ASCII only (no Unicode digits), and no surrounding whitespace is tolerated.
* A date alone is midnight UTC; a date-time without an offset is UTC.
* The result is the integer number of Unix seconds, rounded *down* (floor), also before 1970:
  ``1969-12-31T23:59:59.5Z`` is ``-1``.  Because offsets are whole minutes, the floor of the instant
  is simply the whole-second part minus the offset: the fraction never rounds anything up.

Everything else is left exactly as it was: phone numbers, numeric IDs, version strings, basic-format
dates (``20230328``), years alone, week dates (``2023-W12-1``), ordinal dates (``2023-087``), times
alone, expanded years (``+002023-03-28``), and values that already start with ``$D_`` (these can never
match, as the pattern must start with a digit).

Strings with the right shape that are not a real instant are left unchanged *and* counted as a
warning (:attr:`IsoRejection.NOT_AN_INSTANT`): month 00 or 13+, a day that the month does not have
(``2023-02-30``, ``2023-02-29``), year ``0000`` (outside the proleptic Gregorian years 0001-9999 that
Python's ``datetime`` supports), hour 24 (also ``24:00``), minute 60+, second 60 (leap seconds are not
representable in Unix time), and offsets beyond ±23:59 (offset hour 24+ or offset minute 60+).

The shape test (a strict regular expression) always comes first; no liberal parser
(``dateutil.parser.parse``/``isoparse``, ``datetime.fromisoformat``) is used for detection, as those
accept strings that are not ISO-8601 extended dates.

Event time (``ts``)
-------------------
:func:`event_time_to_unix_seconds` accepts the ISO strings above (same strict rules; strings of
digits are *not* epoch numbers), ``datetime.datetime`` (aware: its instant; naive: UTC),
``datetime.date`` (midnight UTC) and epoch numbers (``int``, finite ``float``, finite
``decimal.Decimal``; ``bool`` is not a number).  The unit of an epoch number is told apart by its
magnitude ``|v|`` (the thresholds are symmetric for negative values)::

    |v| <  1e11              seconds       (1e11 s  = 5138-11-16; larger values cannot be seconds
                                            of any date up to year 5138)
    1e11 <= |v| < 1e14       milliseconds  (1e11 ms = 1973-03-03T09:46:40Z)
    1e14 <= |v| < 1e17       microseconds  (1e14 us = 1973-03-03T09:46:40Z)
    |v| >= 1e17              nanoseconds   (1e17 ns = 1973-03-03T09:46:40Z)

So every unit is recognised for instants between 1973-03-03T09:46:40Z and 5138-11-16; outside that
window a value is read in the next-smaller unit (e.g. a milliseconds value from 1970 is taken for
seconds).  Division floors exactly (no float rounding).

Avro logical types in attributes
--------------------------------
:func:`convert_timestamps` always converts values JSON cannot carry, independently of the ISO
string switch (``iso_strings``) because there is no "original" string to keep:

* ``datetime.datetime`` (timestamp-millis/-micros, local-timestamp-*) -> Unix seconds like an ISO
  date-time (naive = UTC);
* ``datetime.date`` (date) -> Unix seconds of midnight UTC, like an ISO date;
* both become ``"$D_<seconds>"`` when ``date_type`` is set;
* ``decimal.Decimal`` -> ``int`` when integral and within signed 64 bits, else ``float``; a
  Decimal that is non-finite or beyond the float range (cannot come from Avro) becomes its
  ``str``;
* ``uuid.UUID`` -> ``str`` (canonical lower-case hyphenated form).

``datetime.time`` (time-millis/-micros) and ``bytes`` are left unchanged: a time of day is not an
instant.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import math
import re
import uuid
from fractions import Fraction
from typing import Any, Final

__all__ = [
    "CLEVERTAP_DATE_PREFIX",
    "EPOCH_MICROS_MIN",
    "EPOCH_MILLIS_MIN",
    "EPOCH_NANOS_MIN",
    "IsoRejection",
    "clevertap_date",
    "convert_timestamps",
    "datetime_to_unix_seconds",
    "event_time_to_unix_seconds",
    "is_iso_shape",
    "iso_to_unix_seconds",
    "parse_iso8601",
]

CLEVERTAP_DATE_PREFIX: Final = "$D_"

#: Smallest magnitude read as epoch milliseconds (smaller: seconds).
EPOCH_MILLIS_MIN: Final[int] = 10**11
#: Smallest magnitude read as epoch microseconds.
EPOCH_MICROS_MIN: Final[int] = 10**14
#: Smallest magnitude read as epoch nanoseconds.
EPOCH_NANOS_MIN: Final[int] = 10**17


class IsoRejection(enum.Enum):
    """Why :func:`parse_iso8601` did not produce a number."""

    #: Not an ISO-8601 extended calendar date/date-time: leave it unchanged, silently.
    NOT_ISO = "not_iso"
    #: The shape is right but it is no real instant (``2023-02-30``, hour 24, second 60, offset
    #: +24:00, year 0000): leave it unchanged and count a warning.
    NOT_AN_INSTANT = "not_an_instant"


_NOT_ISO: Final = IsoRejection.NOT_ISO
_NOT_AN_INSTANT: Final = IsoRejection.NOT_AN_INSTANT

# Shortest shape is "YYYY-MM-DD" (10), longest "YYYY-MM-DDThh:mm:ss.fffffffff+hh:mm" (35).
_MIN_LEN: Final = 10
_MAX_LEN: Final = 35

# [0-9] rather than \d: \d would also match non-ASCII digits such as Arabic-Indic ones.
# Used with fullmatch(), so a trailing newline cannot sneak in (as it could with "$").
_ISO_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,][0-9]{1,9})?)?"
    r"(?:Z|([+-])([0-9]{2}):?([0-9]{2}))?"
    r")?"
)

# date.toordinal() of 1970-01-01: turns an ordinal day into days since the Unix epoch.
_EPOCH_ORDINAL: Final = 719163
_SECONDS_PER_DAY: Final = 86400
_INT64_LIMIT: Final[int] = 2**63


def parse_iso8601(text: str) -> int | IsoRejection:
    """Return the floored Unix seconds of a strict ISO-8601 extended date/date-time.

    Contract: never raises (also not for a non-``str`` argument, which is ``NOT_ISO``); does not
    depend on the host's time zone.  Returns an ``int`` when ``text`` is a real instant,
    :attr:`IsoRejection.NOT_ISO` when it does not have the accepted shape (leave it unchanged), or
    :attr:`IsoRejection.NOT_AN_INSTANT` when it has the shape but a field is out of range (leave
    it unchanged and warn).  See the module docstring for the exact grammar.
    """
    if not isinstance(text, str):
        return _NOT_ISO
    return _parse(text)


def _parse(text: str) -> int | IsoRejection:
    # Cheap rejection first: almost all attribute strings fail one of these tests, and they are
    # much cheaper than the regular expression.
    n = len(text)
    if n < _MIN_LEN or n > _MAX_LEN or text[4] != "-" or text[7] != "-":
        return _NOT_ISO
    m = _ISO_RE.fullmatch(text)
    if m is None:
        return _NOT_ISO
    year, month, day, hour, minute, second, sign, off_h, off_m = m.groups()
    try:
        # date() validates the real calendar (leap years, day of month, year >= 1) in C.
        days = _dt.date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return _NOT_AN_INSTANT
    seconds = days * _SECONDS_PER_DAY
    if hour is None:
        return seconds
    h = int(hour)
    mi = int(minute)
    s = int(second) if second is not None else 0
    if h > 23 or mi > 59 or s > 59:
        return _NOT_AN_INSTANT
    seconds += h * 3600 + mi * 60 + s
    if sign is not None:
        oh = int(off_h)
        om = int(off_m)
        if oh > 23 or om > 59:
            return _NOT_AN_INSTANT
        offset = oh * 3600 + om * 60
        # Local time = UTC + offset, so UTC = local - offset.
        seconds = seconds - offset if sign == "+" else seconds + offset
    # The fraction is in [0, 1) and everything else is whole seconds, so dropping it is the floor.
    return seconds


def is_iso_shape(text: str) -> bool:
    """True when ``text`` has the accepted ISO-8601 extended shape (valid or not as an instant)."""
    return isinstance(text, str) and _parse(text) is not _NOT_ISO


def iso_to_unix_seconds(text: str) -> int | None:
    """Floored Unix seconds of a strict ISO-8601 extended date/date-time, else ``None``.

    ``None`` covers both "not ISO" and "right shape, no real instant"; use :func:`parse_iso8601`
    to tell them apart.  Never raises.
    """
    r = parse_iso8601(text)
    return r if isinstance(r, int) else None


def datetime_to_unix_seconds(value: _dt.date) -> int:
    """Floored Unix seconds of a ``datetime.datetime`` or ``datetime.date``.

    An aware datetime gives its instant (any ``utcoffset``, including sub-minute ones); a naive
    datetime (or one whose ``utcoffset()`` is ``None``) is read as UTC, whatever the host's time
    zone; a ``date`` is midnight UTC.  Exact integer arithmetic.
    """
    days = value.toordinal() - _EPOCH_ORDINAL
    if not isinstance(value, _dt.datetime):
        return days * _SECONDS_PER_DAY
    micros = (
        days * _SECONDS_PER_DAY + value.hour * 3600 + value.minute * 60 + value.second
    ) * 1_000_000 + value.microsecond
    offset = value.utcoffset()
    if offset is not None:
        # timedelta is exact in microseconds: days/seconds/microseconds are all integers.
        micros -= (offset.days * _SECONDS_PER_DAY + offset.seconds) * 1_000_000 + offset.microseconds
    return micros // 1_000_000


def clevertap_date(seconds: int) -> str:
    """CleverTap's date type for ``seconds``: ``"$D_<seconds>"`` (e.g. ``"$D_1136225047"``)."""
    return f"{CLEVERTAP_DATE_PREFIX}{seconds}"


def _decimal_to_json(value: decimal.Decimal) -> object:
    if not value.is_finite():
        return str(value)
    # Integers beyond 64 bits are not portable JSON numbers (many parsers, orjson included,
    # reject them); a float keeps the magnitude.  adjusted() < 19 means |value| < 1e19, checked
    # before int() so that a huge exponent (1E+999999) is never expanded into a huge int.
    if value.adjusted() < 19 and value == value.to_integral_value():
        as_int = int(value)
        if -_INT64_LIMIT <= as_int < _INT64_LIMIT:
            return as_int
    as_float = float(value)
    # Beyond the float range (cannot come from Avro): JSON has no infinity, keep the digits.
    return as_float if math.isfinite(as_float) else str(value)


class _Walker:
    """One conversion pass; holds the options and the warning count of that pass only."""

    __slots__ = ("date_type", "invalid", "iso_strings")

    def __init__(self, date_type: bool, iso_strings: bool) -> None:
        self.date_type = date_type
        self.iso_strings = iso_strings
        self.invalid = 0

    def seconds_out(self, seconds: int) -> object:
        return clevertap_date(seconds) if self.date_type else seconds

    def string(self, text: str) -> object:
        r = _parse(text)
        if isinstance(r, int):
            return clevertap_date(r) if self.date_type else r
        if r is _NOT_AN_INSTANT:
            self.invalid += 1
        return text

    def mapping(self, value: dict[Any, Any]) -> dict[Any, Any]:
        # The hot path (one call per record, ~15 attributes): the common leaves are handled
        # inline, and strings that cannot be ISO dates are rejected before any call is made.
        out: dict[Any, Any] = {}
        iso = self.iso_strings
        for k, v in value.items():
            t = type(v)
            if t is str:
                out[k] = self.string(v) if iso and len(v) >= _MIN_LEN and v[4] == "-" else v
            elif v is None or t is int or t is float or t is bool:
                out[k] = v
            else:
                out[k] = self.walk(v)
        return out

    def walk(self, value: object) -> object:
        if isinstance(value, str):
            return self.string(value) if self.iso_strings else value
        if value is None or isinstance(value, (int, float)):  # bool is an int
            return value
        if isinstance(value, dict):
            return self.mapping(value)
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.walk(v) for v in value)
        if isinstance(value, _dt.date):  # also datetime.datetime, a subclass
            return self.seconds_out(datetime_to_unix_seconds(value))
        if isinstance(value, decimal.Decimal):
            return _decimal_to_json(value)
        if isinstance(value, uuid.UUID):
            return str(value)
        return value


def convert_timestamps(value: object, *, date_type: bool = False, iso_strings: bool = True) -> tuple[object, int]:
    """Convert timestamps in ``value``; return ``(new_value, invalid_count)``.

    Walks dicts (values only, never keys), lists and tuples to any depth and returns new
    containers of the same kind; the input is never mutated (unchanged leaves are shared, which
    is safe as they are immutable or left as they were).

    * ISO-8601 extended strings (strict rules, module docstring) become floored Unix seconds
      (``int``), or ``"$D_<seconds>"`` when ``date_type``.  Only when ``iso_strings`` is true
      (the default; the Convert Timestamps switch).
    * Right-shape strings that are no real instant stay unchanged and each one adds 1 to
      ``invalid_count`` (only counted when ``iso_strings``).
    * Avro logical-type values are converted regardless of ``iso_strings`` (JSON cannot carry
      them): datetime/date like an ISO string (honouring ``date_type``), Decimal to a number,
      UUID to ``str``.
    * Everything else (numbers, bools, None, other strings, unknown objects) is returned as is.

    Never raises for any plain JSON/Avro-decoded value.
    """
    walker = _Walker(date_type, iso_strings)
    return walker.walk(value), walker.invalid


def _epoch_to_seconds(value: int | Fraction) -> int:
    # Callers pass floats and Decimals as Fraction, which is exact: a float or Decimal division
    # could round across an integer boundary, Fraction // int is the exact floor.
    magnitude = -value if value < 0 else value
    if magnitude < EPOCH_MILLIS_MIN:
        divisor = 1
    elif magnitude < EPOCH_MICROS_MIN:
        divisor = 1_000
    elif magnitude < EPOCH_NANOS_MIN:
        divisor = 1_000_000
    else:
        divisor = 1_000_000_000
    return value // divisor


def event_time_to_unix_seconds(value: object) -> int | None:
    """Floored Unix seconds of an event time, or ``None`` when it is missing or unusable.

    Accepts strict ISO-8601 extended strings, ``datetime.datetime`` (naive = UTC),
    ``datetime.date`` (midnight UTC) and epoch numbers (``int``, finite ``float``, finite
    ``Decimal``) whose unit is told apart by magnitude (:data:`EPOCH_MILLIS_MIN`,
    :data:`EPOCH_MICROS_MIN`, :data:`EPOCH_NANOS_MIN`; module docstring).  ``None``, ``bool``,
    NaN/infinity, strings that are not strict ISO (including digit strings and impossible dates)
    and any other type give ``None``.

    Zero and negative results are returned as computed (the true instant): whether such a ``ts``
    is acceptable to CleverTap is the caller's decision.  Never raises.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        r = _parse(value)
        return r if isinstance(r, int) else None
    if isinstance(value, int):
        return _epoch_to_seconds(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # Whole floats (the usual case) convert to int exactly; Fraction only for the rest.
        return _epoch_to_seconds(int(value) if value.is_integer() else Fraction(value))
    if isinstance(value, decimal.Decimal):
        return _epoch_to_seconds(Fraction(value)) if value.is_finite() else None
    if isinstance(value, _dt.date):  # also datetime.datetime, a subclass
        return datetime_to_unix_seconds(value)
    return None
