"""Protobuf Timestamp and Duration to and from Python values, one way for every service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp, or None to leave the field unset."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def instant(ts: Timestamp, present: bool) -> datetime | None:
    """A UTC datetime from a Timestamp field, None when the field is unset."""
    return ts.ToDatetime(tzinfo=UTC) if present else None


def duration(value: Duration, present: bool) -> timedelta | None:
    """A timedelta from a Duration field, None when unset."""
    return value.ToTimedelta() if present else None
