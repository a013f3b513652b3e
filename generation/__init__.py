"""Generation: the task catalogue, model resolution and the engines. Knows nothing of Discord or SQL."""

# First: the libraries below must not print their import-time noise (see generation/quiet_imports.py).
import generation.quiet_imports  # noqa: F401, I001
from generation.catalogue import MAX_VARIANTS, TASKS, VARIANTS_DESCRIPTION, Field, Prompt, Task, get_task
from generation.engine import Engine, EngineConfig, LocalEngine, ModelInfo, StreamUpdate
from generation.errors import (
    GenerationCancelled,
    GenerationError,
    InputError,
    ModelNotFound,
)
from generation.model_source import ModelSource, resolve_model
from generation.sampling import Sampling
from generation.slots import EngineLoad

__all__ = [
    "TASKS", "Engine", "EngineConfig", "EngineLoad", "Field", "GenerationCancelled", "GenerationError", "InputError", "LocalEngine",
    "ModelInfo", "ModelNotFound", "ModelSource", "Prompt", "Sampling", "StreamUpdate", "Task", "get_task",
    "resolve_model",
    "MAX_VARIANTS", "VARIANTS_DESCRIPTION",
]
