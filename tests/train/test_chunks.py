"""train.chunks: a schedule file's chunks, resumed where the checkpoint stopped."""

import pytest
import torch

from dgnam import DgnamError
from train import chunks


def _schedule(tmp_path, body):
    path = tmp_path / "schedule.yaml"
    path.write_text("program: train.generator\nconfig: c.yaml\ncheckpoint: " + str(tmp_path / "last.ckpt")
                    + "\nchunks:\n" + body)
    return chunks.read_schedule(path)


def test_chunks_skip_what_the_checkpoint_has_done_and_stop_early(tmp_path):
    schedule = _schedule(tmp_path,
                         "  - {until: 100}\n  - {until: 200, flags: {model.lr_g: 1.0e-4}}\n  - {until: 300}\n")
    first = chunks.commands(schedule, 0)
    assert len(first) == 3 and "--ckpt_path" not in first[0] and "--ckpt_path" in first[1]
    assert first[1][-2:] == ["--model.lr_g", "0.0001"]
    torch.save({"global_step": 150}, tmp_path / "last.ckpt")
    done = chunks.trained_steps(tmp_path / "last.ckpt")
    later = chunks.commands(schedule, done, stop_at=250)
    assert [c[c.index("--trainer.max_steps") + 1] for c in later] == ["200", "250"]
    assert all("--ckpt_path" in c for c in later)
    assert chunks.commands(schedule, 300) == []
    assert chunks.commands(schedule, 150, stop_at=0) == []  # --until 0 runs nothing (it ran everything)


def test_bad_schedules_are_one_line(tmp_path):
    with pytest.raises(DgnamError, match="does not follow 200"):
        _schedule(tmp_path, "  - {until: 200}\n  - {until: 100}\n")
    with pytest.raises(DgnamError, match="until: ITERATIONS"):
        _schedule(tmp_path, "  - {until: -1}\n")
    with pytest.raises(DgnamError, match="lists no chunks"):
        _schedule(tmp_path, "")
    with pytest.raises(DgnamError, match="until: ITERATIONS"):
        _schedule(tmp_path, "  - {until: true}\n")  # a bool is an int to isinstance
    (tmp_path / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DgnamError, match="cannot read the checkpoint .*last.ckpt"):
        chunks.trained_steps(tmp_path / "last.ckpt")
    with pytest.raises(DgnamError, match="is a folder; name the last.ckpt the config writes"):
        chunks.trained_steps(tmp_path)


def test_the_shipped_fc6_schedule_reaches_15000_iterations():
    schedule = chunks.read_schedule("configs/cifar10/generator_fc6_chunks.yaml")
    assert schedule.chunks[-1].until >= 15000
    assert schedule.config == "configs/cifar10/generator_fc6.yaml"
