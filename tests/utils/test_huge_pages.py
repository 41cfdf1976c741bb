"""swat's command line turns on PyTorch's huge pages for large tensors before torch allocates, and
keeps a user's own setting: counted in page faults of a fresh process filling a 256 MiB tensor."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swat.utils.huge_pages import ENV

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
PAGES = 2**28 // 4096  # 4 KiB pages of the tensor
FILL = """
import resource
import swat.cli
import torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(2**26).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

pytestmark = pytest.mark.skipif(not THP_SETTING.exists() or "[never]" in THP_SETTING.read_text(),
                                reason="this kernel gives no transparent huge pages")


def page_faults(setting: str | None) -> int:
    env = {key: value for key, value in os.environ.items() if key != ENV}
    if setting is not None:
        env[ENV] = setting
    done = subprocess.run([sys.executable, "-c", FILL], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_the_command_line_turns_huge_pages_on():
    assert page_faults(None) < PAGES // 8


def test_a_users_own_setting_is_kept():
    assert page_faults("0") > PAGES // 2
