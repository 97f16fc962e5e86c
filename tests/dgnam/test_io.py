"""dgnam.io: atomic files and run folders (all or nothing), checkpoint reading with one-line errors."""

import builtins
import os
import pickle
import zipfile

import pytest
import torch

import dgnam.io
from dgnam.errors import DgnamError
from dgnam.io import atomic_save, atomic_write, load_checkpoint, write_directory, writing


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_atomic_save_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "model.pt"
    atomic_save({"w": torch.arange(3)}, path)  # the folder is made
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()  # not mkstemp's private 0600
    before = path.read_bytes()

    def half_then_fail(tmp):
        tmp.write_bytes(before[: len(before) // 2])  # a partial file...
        raise OSError("disk full")  # ...then the write fails

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == before  # the old file, untouched
    # torch.save cannot pickle a lambda: pickle raises AttributeError for a local object (PicklingError in
    # other cases and Python versions)
    with pytest.raises((AttributeError, pickle.PicklingError)):
        atomic_save({"f": lambda: 0}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temporary file left
    fresh = tmp_path / "fresh.pt"
    with pytest.raises(OSError):
        atomic_write(fresh, half_then_fail)
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_a_full_disk_is_an_os_error_and_leaves_nothing(tmp_path, monkeypatch):
    """dgnam stats on a full disk: torch's writer raised RuntimeError("unexpected pos ..."), a traceback."""
    monkeypatch.setattr(dgnam.io, "open", lambda path, mode: builtins.open("/dev/full", mode), raising=False)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"w": torch.zeros(10000)}, tmp_path / "g.pt")
    with pytest.raises(DgnamError, match="could not write .*No space left") as info:
        with writing(tmp_path / "g.pt"):
            atomic_save({"w": torch.zeros(10000)}, tmp_path / "g.pt")
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


def test_write_directory_publishes_a_whole_run_or_nothing(tmp_path):
    def two_files(staging):
        (staging / "a.txt").write_text("a")
        (staging / "b.txt").write_text("b")

    out = write_directory(tmp_path / "run", two_files)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]

    def fails_halfway(staging):
        (staging / "a.txt").write_text("a")
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        write_directory(tmp_path / "failed", fails_halfway)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # neither the run nor its staging folder
    (tmp_path / "empty").mkdir()
    write_directory(tmp_path / "empty", two_files)  # an empty folder may be replaced...
    assert (tmp_path / "empty" / "b.txt").read_text() == "b"
    with pytest.raises(DgnamError, match=r"could not write .*stayed empty") as info:
        write_directory(tmp_path / "run", two_files)  # ...one with files may not
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["a.txt", "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "run"]



def test_a_failed_run_removes_the_folders_it_created_and_only_those(tmp_path):
    def fails(staging):
        raise KeyboardInterrupt

    (tmp_path / "kept").mkdir()  # the user's empty folder: it was there before, so it stays
    for out in (tmp_path / "a" / "b" / "run", tmp_path / "kept" / "c" / "run"):
        with pytest.raises(KeyboardInterrupt):
            write_directory(out, fails)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
    (tmp_path / "busy").mkdir()
    staging = dgnam.io.staging_directory(tmp_path / "busy" / "x" / "run")
    (tmp_path / "busy" / "x" / "other run").mkdir()  # another run's folder appeared beside it meanwhile
    dgnam.io.discard_staging(staging)
    assert sorted(p.name for p in (tmp_path / "busy" / "x").iterdir()) == ["other run"]


def test_safe_name_keeps_a_name_readable_and_inert():
    assert dgnam.io.safe_name("resnet18-tv_v2") == "resnet18-tv_v2"
    assert dgnam.io.safe_name("features.relu4_2") == "features_relu4_2"  # synthesize's image file names
    assert dgnam.io.safe_name("ev\x1b[2Jil\nname/../x") == "ev__2Jil_name____x"

def test_write_directory_unique_never_loses_a_finished_run(tmp_path):
    """Runs with the default --out started in the same second choose the same name: the later ones are
    published as NAME-2, NAME-3 (they failed with "Directory not empty" after all their compute)."""
    for n in range(3):
        out = write_directory(tmp_path / "run", lambda staging, n=n: (staging / "n.txt").write_text(str(n)),
                              unique=True)
        assert out.name == ("run" if n == 0 else f"run-{n + 1}") and (out / "n.txt").read_text() == str(n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run-2", "run-3"]


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_the_longest_valid_name_does_not_fail_on_its_hidden_staging_name(kind, tmp_path):
    """.NAME.XXXXXXXX (.tmp) of a 255-byte NAME is over the limit: the staging name is cut, not the output's."""
    name = "n" * os.pathconf(tmp_path, "PC_NAME_MAX")
    if kind == "folder":
        out = write_directory(tmp_path / name, lambda staging: (staging / "a.txt").write_text("a"))
        assert (out / "a.txt").read_text() == "a"
    else:
        atomic_write(tmp_path / name, lambda tmp: tmp.write_text("a"))
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_load_checkpoint_checks_the_format_tag_in_one_line(tmp_path):
    path = atomic_save({"format": "dgnam.thing", "x": 1}, tmp_path / "thing.pt")
    assert load_checkpoint(path, "dgnam.thing", "thing")["x"] == 1
    cases = [
        (tmp_path / "missing.pt", "thing file '.*missing.pt' does not exist"),
        (atomic_save({"format": "dgnam.other"}, tmp_path / "other.pt"),
         r"is not a thing \(format 'dgnam.other', expected 'dgnam.thing'\)"),
        (atomic_save([1, 2], tmp_path / "list.pt"), r"is not a thing \(format 'list'"),
    ]
    script = tmp_path / "net.ts"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(script))
    assert zipfile.is_zipfile(script)
    cases.append((script, "is a TorchScript archive, not a thing"))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00garbage")
    cases.append((broken, "the file is corrupt or not a PyTorch checkpoint"))
    for file, message in cases:
        with pytest.raises(DgnamError, match=message) as info:
            load_checkpoint(file, "dgnam.thing", "thing")
        assert "\n" not in str(info.value)


