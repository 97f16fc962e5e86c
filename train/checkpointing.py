"""The checkpoint callback of every training config."""

from __future__ import annotations

import os

from lightning.pytorch.callbacks import ModelCheckpoint


class LastAtEnd(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` holds the run's final step.

    Lightning writes "last" at the end of training only when no "last" was written earlier in the run, so a run
    whose ``max_steps`` is not a multiple of ``every_n_train_steps`` ended with ``last.ckpt`` behind its export:
    ``train.chunks`` then redid the chunk and ``train.handoff`` refused the pair.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._saved_step = -1  # global step of the newest checkpoint this run wrote

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own key: checkpoints written before this class keep their callback state on resume.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        self._saved_step = checkpoint.get("global_step", self._saved_step)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and self.dirpath and trainer.global_step > self._saved_step:
            trainer.save_checkpoint(os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION))
