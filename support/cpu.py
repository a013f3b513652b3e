"""What this CPU offers, read from the kernel rather than from a library, so a change in how a library
detects it cannot change what a test expects."""

from __future__ import annotations

from pathlib import Path


def cpu_has(flag: str) -> bool:
    """Whether the kernel lists `flag` (as /proc/cpuinfo spells it) among this CPU's features."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and flag in cpuinfo.read_text().split()


def cpu_has_avx512_bf16() -> bool:
    """bitsandbytes repacks 4-bit weights for its fused CPU kernel (and copydesk's bf16 prefill applies) only here."""
    return cpu_has("avx512_bf16")
