"""The code follows the repository's setup.cfg (MMPretrain's lint rules)."""
import subprocess
import sys

import pytest
from helpers import REPO

PATHS = ['nfnet_mm', 'tools', 'tests', 'lab', 'setup.py']


@pytest.mark.parametrize('tool, args', [
    ('flake8', []),
    ('isort', ['--check-only', '--diff']),
])
def test_no_lint_findings(tool, args):
    out = subprocess.run([sys.executable, '-m', tool, *args, *PATHS],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
