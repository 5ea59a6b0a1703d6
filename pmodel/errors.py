"""Exceptions shared by every layer."""

from __future__ import annotations

from pathlib import Path


class StopTraining(Exception):
    """Raised by a fit's ``after_epoch`` callback to end training at once (a sweep pruning a
    trial whose validation loss is not promising). The fit does not finish: the model is left
    unfitted, and the caller that raised it decides what the stop means."""


class DataValidationError(ValueError):
    """An input broke one or more data rules.

    The message names the file, the first offending rows or images and each
    rule broken; ``report_path`` is the full JSON report kept on disk.
    """

    def __init__(self, message: str, *, path: Path | str, report_path: Path | None = None,
                 failures: list[dict] | None = None):
        super().__init__(message)
        self.path = Path(path)
        self.report_path = report_path
        self.failures = failures or []
