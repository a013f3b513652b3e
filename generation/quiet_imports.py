"""Silence the warnings that optional kernels print when their libraries are imported.

bitsandbytes warns that it cannot fetch an optional CPU kernel from the Hub, torchao that its
CUDA-only extensions do not load, and torch that torchao registers enums the old way. copydesk
uses none of those, and imports that reach them (PEFT pulls in both) must not write to a CLI's
stderr. `generation/__init__.py` imports this module before anything else.
"""

import logging

for _noisy in ("bitsandbytes.backends.cpu.ops", "torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
