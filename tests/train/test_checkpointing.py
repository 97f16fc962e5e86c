"""train.checkpointing.LastAtEnd: last.ckpt holds the final step, whatever the save interval."""

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from train.checkpointing import LastAtEnd


def _fit(callback, max_steps: int, ckpt_path=None) -> None:
    Trainer(max_steps=max_steps, callbacks=[callback], logger=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, accelerator="cpu").fit(BoringModel(), ckpt_path=ckpt_path)


def test_last_checkpoint_is_the_final_step_off_the_save_interval(tmp_path):
    def last_step(folder):
        return torch.load(folder / "last.ckpt", weights_only=True)["global_step"]

    _fit(ModelCheckpoint(dirpath=tmp_path / "plain", save_last=True, every_n_train_steps=2, save_top_k=0), 3)
    assert last_step(tmp_path / "plain") == 2  # Lightning's own: behind the run, which ended at 3
    callback = LastAtEnd(dirpath=tmp_path / "ours", save_last=True, every_n_train_steps=2, save_top_k=0)
    _fit(callback, 3)
    assert last_step(tmp_path / "ours") == 3
    assert callback.state_key.startswith("ModelCheckpoint{")  # resumes the state of runs saved before it
    resumed = LastAtEnd(dirpath=tmp_path / "ours", save_last=True, every_n_train_steps=2, save_top_k=0)
    _fit(resumed, 5, ckpt_path=tmp_path / "ours" / "last.ckpt")
    assert last_step(tmp_path / "ours") == 5
