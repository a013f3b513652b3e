"""Training the next model version: a LoRA adapter on the 4-bit base, from a feedback export.

TRL's trainers (SFT, DPO, KTO) with PEFT do the training; this package chooses their settings for
the machine, reports progress, stops cleanly on a signal, evaluates the candidate against the
version it would replace, and writes the version's folder whole (adapter, merged checkpoint, card).
It takes plain paths and numbers: it knows nothing of the database or Discord.
"""

from generation.training.config import FORMATS_OF, METHODS, TrainingConfig, TrainingData, TrainingError
from generation.training.evaluation import Evaluation, evaluate
from generation.training.progress import TrainingProgress
from generation.training.trainer import TrainingInterrupted, TrainingRun, train_adapter
from generation.training.version_folder import VersionFolder, write_version_folder

__all__ = [
    "FORMATS_OF", "METHODS", "Evaluation", "TrainingConfig", "TrainingData", "TrainingError", "TrainingInterrupted",
    "TrainingProgress", "TrainingRun", "VersionFolder", "evaluate", "train_adapter", "write_version_folder",
]
