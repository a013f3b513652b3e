"""On CUDA the engine runs bitsandbytes' and transformers' own paths: the CPU-only measures switch themselves off.

Checked without a GPU where the loader and the engine both decide (`cpu_measures`), fed the device
strings they get; tests/test_engine_measures.py observes that on the CPU the measures named here run.
bench/gpu.sh measures the CUDA path itself on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from generation.errors import QuantizationUnavailable
from generation.loading import (
    BF16_PREFILL,
    PER_REQUEST_ATTENTION,
    QUANTIZATIONS,
    cpu_measures,
    pick_quantization,
)


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_a_model_on_cuda_takes_none_of_the_cpu_measures(device: str, quantization: str) -> None:
    assert cpu_measures(device, quantization) == frozenset()


def test_a_model_on_the_cpu_takes_the_attention_and_in_nf4_the_bf16_products() -> None:
    assert cpu_measures("cpu", "nf4") == {BF16_PREFILL, PER_REQUEST_ATTENTION}
    assert cpu_measures("cpu:0", "nf4") == {BF16_PREFILL, PER_REQUEST_ATTENTION}
    assert cpu_measures("cpu", "int8") == {PER_REQUEST_ATTENTION}
    assert cpu_measures("cpu", "none") == {PER_REQUEST_ATTENTION}


def test_auto_decides_by_the_device_it_picks() -> None:
    expected = frozenset() if torch.cuda.is_available() else {BF16_PREFILL, PER_REQUEST_ATTENTION}
    assert cpu_measures("auto", "nf4") == expected


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_auto_quantization_is_nf4_on_cuda_and_int4_is_refused_there(device: str) -> None:
    assert pick_quantization("auto", device) == "nf4"
    assert pick_quantization("nf4", device) == "nf4"
    refusal = r"model.quantization int4 \(torchao's CPU kernel\) runs on the CPU only; use nf4 or auto on CUDA"
    with pytest.raises(QuantizationUnavailable, match=refusal):
        pick_quantization("int4", device)


def test_auto_quantization_is_int4_on_the_cpu_which_takes_only_the_attention_measure() -> None:
    assert pick_quantization("auto", "cpu") == "int4"
    assert pick_quantization("nf4", "cpu") == "nf4"
    assert cpu_measures("cpu", "int4") == {PER_REQUEST_ATTENTION}
