"""Ad platforms: their fields and limits, how each counts characters, and fitting a draft into them."""

from generation.platforms.counting import CountingRule
from generation.platforms.fitting import FIELD_TRIES, fit
from generation.platforms.layout import FieldStatus, PlatformDraft, PlatformField, parse
from generation.platforms.specs import GENERIC, PLATFORM_NAMES, PLATFORMS, FieldSpec, Platform, get_platform

__all__ = [
    "FIELD_TRIES", "GENERIC", "PLATFORMS", "PLATFORM_NAMES", "CountingRule", "FieldSpec", "FieldStatus", "Platform",
    "PlatformDraft", "PlatformField", "fit", "get_platform", "parse",
]
