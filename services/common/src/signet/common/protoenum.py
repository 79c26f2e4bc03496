"""Mapping between a service's domain enums (StrEnum) and the API's proto enums.

Proto enum value names are ``<PREFIX><NAME>`` (``KEY_ALGORITHM_EC_P256``); the domain
value's upper-cased text is ``<NAME>``. One :class:`ProtoEnum` per pair, so servicers turn
unset or unknown numbers into INVALID_ARGUMENT with the field's name in one place.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

from signet.common.errors import InvalidArgument

_E = TypeVar("_E", bound=StrEnum)


class ProtoEnum(Generic[_E]):
    """Converts one domain enum to and from one proto enum."""

    def __init__(self, enum_cls: type[_E], wrapper: Any, prefix: str) -> None:
        self._enum = enum_cls
        self._by_number: dict[int, _E] = {}
        self._by_value: dict[_E, int] = {}
        for member in enum_cls:
            number = int(wrapper.Value(prefix + member.value.upper()))
            self._by_number[number] = member
            self._by_value[member] = number
        self._wrapper = wrapper

    def to_proto(self, value: _E) -> int:
        """The proto number of ``value``."""
        return self._by_value[value]

    def from_proto(self, number: int, field: str) -> _E | None:
        """The domain value of ``number``; None when unset (0); INVALID_ARGUMENT if unknown."""
        if number == 0:
            return None
        member = self._by_number.get(number)
        if member is None:
            try:
                name = str(self._wrapper.Name(number))
            except ValueError:
                raise InvalidArgument(f"{field} has an unknown value {number}") from None
            raise InvalidArgument(f"{field} value {name} is not supported")
        return member

    def required(self, number: int, field: str) -> _E:
        """Like :meth:`from_proto` for a field that must be set."""
        value = self.from_proto(number, field)
        if value is None:
            raise InvalidArgument(f"{field} is required")
        return value
