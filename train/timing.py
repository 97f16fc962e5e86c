"""Training wall-clock time through Lightning's :class:`~lightning.pytorch.callbacks.Timer`.

The Timer measures the training stage and keeps its count in the checkpoint, so a resumed run goes on
counting from where the last one stopped. Checkpoints written before the Timer kept the count as
``checkpoint["dgnam"]["train_seconds"]``; :meth:`TimedModule.restore_seconds` reads either.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Timer

TIMER_STATE = Timer.__qualname__  # the Timer's key in checkpoint["callbacks"]


class TimedModule(L.LightningModule):
    """A LightningModule whose trainer runs a :class:`Timer` (one is added unless the trainer has one)."""

    _restored_seconds: float = 0.0  # a checkpoint's count, for a module rebuilt without a trainer

    def configure_callbacks(self):
        return [] if self._timer() is not None else [Timer()]

    def _timer(self) -> Timer | None:
        try:
            callbacks = self.trainer.callbacks
        except RuntimeError:  # not attached to a trainer (a module rebuilt from a checkpoint to export it)
            return None
        return next((c for c in callbacks if isinstance(c, Timer)), None)

    def train_seconds(self) -> float:
        """Seconds spent training, the runs this one resumed included."""
        timer = self._timer()
        return timer.time_elapsed("train") if timer is not None else self._restored_seconds

    def restore_seconds(self, checkpoint: dict) -> None:
        """Call from ``on_load_checkpoint``: a checkpoint from before the Timer gives the Timer its count."""
        callbacks = checkpoint.setdefault("callbacks", {})
        legacy = checkpoint.get("dgnam", {}).get("train_seconds")
        if TIMER_STATE not in callbacks and legacy is not None:
            callbacks[TIMER_STATE] = {"time_elapsed": {"train": float(legacy)}}
        self._restored_seconds = float(callbacks.get(TIMER_STATE, {}).get("time_elapsed", {}).get("train", 0.0))
