"""dgnam.cli.entry: the ``dgnam`` console script and ``python -m dgnam`` import nothing heavy before they can
turn a signal into one line, so a Ctrl-C or a SIGTERM during the seconds torch takes to import exits 130 or 143
quietly."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import as_from_a_terminal

ROOT = Path(__file__).resolve().parents[3]

# Installed as sitecustomize (imported at every interpreter start): the first import of torch announces
# itself in the file DGNAM_TEST_IMPORTING and then takes a minute, as a cold start on a slow disk can.
SLOW_TORCH = textwrap.dedent("""
    import os, sys, time

    class SlowTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                open(os.environ["DGNAM_TEST_IMPORTING"], "w").close()
                time.sleep(60)
            return None

    sys.meta_path.insert(0, SlowTorch())
""")


def _env(*paths) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [*map(str, paths), str(ROOT),
                                                                        os.environ.get("PYTHONPATH")]))}


def test_the_entry_point_and_the_package_import_no_torch():
    probe = ("import sys, dgnam, dgnam.cli.entry; "
             "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'dgnam.cli.main') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("signum", "code", "line"), [(signal.SIGINT, 130, "dgnam: interrupted"),
                                                      (signal.SIGTERM, 143, "dgnam: terminated")])
def test_a_signal_while_torch_imports_is_one_line_and_its_exit_code(tmp_path, signum, code, line):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_TORCH)
    importing = tmp_path / "importing"
    proc = subprocess.Popen([sys.executable, "-m", "dgnam", "--version"], cwd=tmp_path, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_from_a_terminal,
                            env={**_env(tmp_path / "site"), "DGNAM_TEST_IMPORTING": str(importing)})
    deadline = time.monotonic() + 60
    while not importing.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert importing.exists(), proc.communicate(timeout=60)
    os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C or a scheduler's stop: the whole group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err == line + "\n" and out == ""
