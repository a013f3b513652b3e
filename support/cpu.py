"""What this CPU offers, read from the kernel rather than from a library, so a change in how a library
detects it cannot change what a test expects."""

from __future__ import annotations

from pathlib import Path


def cpu_has_avx512_bf16() -> bool:
    """bitsandbytes repacks 4-bit weights for its fused CPU kernel (and copydesk's bf16 prefill applies) only here."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "avx512_bf16" in cpuinfo.read_text().split()
