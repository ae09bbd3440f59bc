"""The modules that put files on disk go through the one atomic-write helper.

Each test plays a real failure the hand-written variants did not withstand: a planted symlink at
a predictable temp name (a fixed name opened without O_EXCL follows it), and a disk that fills up
mid-write (the old model writer left its temp file behind).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from eth_account import Account

from fedledger.chain.keyfile import load_eth_key, save_eth_key
from fedledger.fl import ModelSpec, initial_global_state, save_global
from node.training_step import TrainedUpdate


def test_eth_key_file_ignores_a_planted_temp_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / ".eth.json.tmp").symlink_to(victim)  # the old fixed temp name
    target = tmp_path / "eth.json"
    account = Account.create()
    save_eth_key(target, account, "pw")
    assert victim.read_text() == "untouched"
    assert not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert load_eth_key(target, "pw").address == account.address


def test_training_summary_ignores_a_planted_temp_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "trained.tmp").symlink_to(victim)  # the old fixed temp name
    target = tmp_path / "trained.json"
    TrainedUpdate(tmp_path / "u", b"\x01" * 32, b"\x02" * 32, 10, 0.5, 0.1).save_summary(target, b"\x03" * 32)
    assert victim.read_text() == "untouched"
    assert not target.is_symlink() and target.read_text().startswith("{")


_FILL_DISK = """
import resource, signal, sys
from fedledger.fl import ModelSpec, initial_global_state, save_global
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
spec = ModelSpec("mlp", (64,), 10, (256,))
try:
    save_global(sys.argv[1], initial_global_state(spec, 1), spec, 2)
except OSError:
    sys.exit(3)
"""


def test_model_write_that_runs_out_of_space_keeps_the_old_file_and_no_temp(tmp_path):
    small = ModelSpec("mlp", (4,), 2, (8,))
    target = tmp_path / "global.safetensors"
    save_global(target, initial_global_state(small, 1), small, 1)
    before = target.read_bytes()
    run = subprocess.run([sys.executable, "-c", _FILL_DISK, str(target)], capture_output=True, text=True)
    assert run.returncode == 3, run.stderr
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["global.safetensors"]
