"""Files: atomic writes (write to a temporary file beside the target, then rename), checkpoint reading, and
where the checkpoints dgnam ships are."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dgnam.errors import DgnamError, first_line


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=hidden_prefix(path, ".tmp"), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 would make shared outputs private
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def write_directory(out_dir: str | os.PathLike, write: Callable[[Path], None], unique: bool = False) -> Path:
    """Call ``write(staging)`` on a hidden sibling of ``out_dir``, then rename it to ``out_dir`` and return
    where it went (see :func:`publish_directory` for ``unique``).

    All or nothing: if ``write`` fails, the staging folder is removed and ``out_dir`` is untouched.
    ``out_dir`` may exist only as an empty directory (it is replaced).
    """
    out_dir = Path(out_dir)
    staging = staging_directory(out_dir)
    try:
        with writing(out_dir):
            write(staging)
            return publish_directory(staging, out_dir, unique)
    except BaseException:
        discard_staging(staging)
        raise


# staging folder -> the folders above it that making it created (deepest first), removed again with it
_CREATED_FOR: dict[Path, list[Path]] = {}


def staging_directory(out_dir: Path) -> Path:
    """A new hidden folder beside ``out_dir`` to write a run into, before :func:`publish_directory` (or, when
    the run fails, :func:`discard_staging`)."""
    missing = [folder for folder in (out_dir.parent, *out_dir.parent.parents) if not folder.exists()]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=hidden_prefix(out_dir), dir=out_dir.parent))
    _CREATED_FOR[staging] = missing
    return staging


def discard_staging(staging: Path) -> None:
    """Remove the staging folder of a run that failed, and the folders making it created (``--out a/b/run``
    creates ``a/b``; the default creates ``dgnam-runs``) while they are empty: a failed run leaves nothing."""
    shutil.rmtree(staging, ignore_errors=True)
    for folder in _CREATED_FOR.pop(staging, []):
        try:
            folder.rmdir()
        except OSError:  # not empty: another run, or the user, put something there meanwhile
            break


def publish_directory(staging: Path, out_dir: Path, unique: bool = False) -> Path:
    """Rename a complete staging folder to ``out_dir``, which may exist only as an empty directory, and return
    ``out_dir``. ``unique`` (a name dgnam chose, like the default ``dgnam-runs/<time>-<model>``): when another
    run took the name meanwhile, the folder becomes ``out_dir-2``, ``-3``, ... instead, so no finished run is lost.
    The rename itself is the create-exclusive step: it replaces only a missing or empty directory, atomically."""
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would make shared outputs private
    _CREATED_FOR.pop(staging, None)
    target, n = out_dir, 1
    while True:
        try:
            os.rename(staging, target)
            return target
        except OSError as exc:
            if not unique or exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        n += 1
        target = out_dir.with_name(f"{out_dir.name}-{n}")


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name, in bytes, that ``folder``'s filesystem allows (255 where it does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def safe_name(name: str) -> str:
    """``name`` (of a model, a layer: from a file or checkpoint) as part of a file name: letters, digits, ``-``
    and ``_`` kept, anything else (dots, separators, control characters, spaces) as ``_``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def fit_name(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes in the filesystem's encoding (never inside a character)."""
    encoded = os.fsencode(name)
    while len(encoded) > limit:
        name = name[:-1]
        encoded = os.fsencode(name)
    return name


def hidden_prefix(path: Path, suffix: str = "") -> str:
    """The prefix of a hidden sibling of ``path`` (staging folder, temporary file): ``.NAME.``, with NAME cut so
    that the prefix, tempfile's 8 random characters and ``suffix`` fit the filesystem's name limit: a final name
    of the longest valid length must not fail on its staging name."""
    room = name_max(path.parent if path.parent.exists() else ".") - len(".." + suffix) - 8
    return f".{fit_name(path.name, room)}."


@contextmanager
def writing(out: Path) -> Iterator[None]:
    """Turn a failure to write the output ``out`` (an ``OSError``) into one line that names the fix."""
    try:
        yield
    except OSError as exc:
        raise DgnamError(f"could not write '{out}' ({exc.strerror or exc}); check space and permissions, "
                         f"and that the output stayed empty while dgnam wrote it") from None


@contextmanager
def reading(path: str | os.PathLike, what: str, fix: str) -> Iterator[None]:
    """The one place a failure to read an input becomes one line naming ``path`` and ``fix``: an ``OSError``
    (permissions, a truncated image), PIL's decompression-bomb guard (its warning too: its two lines would
    break the one-line contract), or whatever ``torch.load`` raises on a corrupt or foreign file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except DgnamError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DgnamError(f"{what} '{path}' has more than PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels; "
                         f"downscale it (or remove it)") from None
    except Exception as exc:  # any reader's failure (PIL raises many types), reported in one line
        raise DgnamError(f"cannot read {what} '{path}' ({first_line(exc, 120)}); {fix}") from None


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a truncated checkpoint behind. It writes through a Python file: a full
    disk is then an ``OSError`` (No space left on device), which :func:`writing` makes one line, where torch's
    own writer raised an unreadable ``RuntimeError`` ("unexpected pos ...")."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            torch.save(obj, file)

    return atomic_write(path, save)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", path)


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (a zip holding compiled ``code/``), False for a pickled state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise DgnamError(f"{what} '{path}' is a directory; pass the checkpoint file itself")
    if not path.is_file():
        raise DgnamError(f"{what} file '{path}' does not exist; check the path")
    return path


def read_torch(path: str | os.PathLike, what: str, fix: str, mmap: bool = False) -> Any:
    """``torch.load`` of the file ``path`` with ``weights_only=True`` (``mmap``: tensors read only when used): a
    missing, unreadable or corrupt file is one line naming ``what``, the path and ``fix``."""
    path = _existing_file(path, what)
    with reading(path, what, fix):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_checkpoint(path: str | os.PathLike, expected_format: str, what: str) -> dict:
    """Load a dgnam checkpoint dict with ``weights_only=True`` and check its ``format`` tag.

    Every failure is a one-line :class:`DgnamError` naming the file and the fix.
    """
    fix = "the file is corrupt or not a PyTorch checkpoint, re-download or re-export it"
    path = _existing_file(path, what)
    with reading(path, what, fix):
        if is_torchscript(path):
            raise DgnamError(f"'{path}' is a TorchScript archive, not a {what}; pass it as --model, or export a "
                             f"dgnam checkpoint")
    ckpt = read_torch(path, what, fix)
    if not isinstance(ckpt, dict) or ckpt.get("format") != expected_format:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DgnamError(f"'{path}' is not a {what} (format {found!r}, expected {expected_format!r}); "
                         f"pass a file written by dgnam's export")
    return ckpt


def shipped(name: str) -> Path:
    """The checkpoint ``name`` (e.g. ``cifar10/generator.pt``) among those dgnam ships as package data.

    They are found in the installed package (``dgnam/checkpoints``), so an installed dgnam finds them
    from any working directory. In a source checkout ``dgnam/checkpoints`` links to the top-level
    ``checkpoints/``, the one copy, and the path returned is the linked file's.
    Example: ``load_generator(shipped("cifar10/generator.pt"))``
    """
    return Path(str(resources.files("dgnam").joinpath("checkpoints", *name.split("/")))).resolve()

