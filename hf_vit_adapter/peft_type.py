"""Adds `BOTTLENECK` to PEFT's closed `PeftType` enum, which `register_peft_method` requires."""

from __future__ import annotations

from peft.utils import PeftType

METHOD_NAME = "bottleneck"


def _extend_peft_type(name: str) -> PeftType:
    """Return `PeftType[name]`, adding it as a new member of the str enum when PEFT does not know it yet."""
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    type.__setattr__(PeftType, name, member)
    return member


BOTTLENECK_PEFT_TYPE = _extend_peft_type(METHOD_NAME.upper())
