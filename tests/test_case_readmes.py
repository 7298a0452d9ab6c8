"""The commands in each case's README run as pasted (tiny sizes, in a scratch folder)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).resolve().parent.parent / "modelzoo"
# The cases whose README follows the per-case layout (model, data, commands, results with
# intervals, what differs).
READMES = ("climate", "cosmology", "dayabay", "ecog", "galaxy", "lhc")


def commands(case: str) -> list[str]:
    """The lines of the README's bash blocks that call the zoo, without comments; verify runs
    are left to test_pretrained (they regenerate the entries' sets)."""
    text = (CASES / case / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            calls_zoo = line.startswith(("modelzoo ", "python -m modelzoo"))
            if calls_zoo and " verify " not in f"{line} ":
                lines.append(line)
    return lines


def test_every_case_readme_has_the_five_verbs():
    for case in READMES:
        verbs = {shlex.split(line)[1] for line in commands(case) if line.startswith("modelzoo ")}
        assert {"data", "train", "evaluate", "predict", "explain"} <= verbs, (case, verbs)


# Runs the README's lines in order in one fresh interpreter, each as the shell would (the
# ``modelzoo`` entry point's main, or ``python -m``), stopping at the first that fails; one
# TensorFlow import per case instead of one per command.
_DRIVER = """
import json, runpy, shlex, sys
from modelzoo import cli
for line in json.loads(sys.argv[1]):
    argv = shlex.split(line)
    try:
        if argv[0] == "modelzoo":
            code = cli.main(argv[1:])
        else:
            sys.argv = argv[2:]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
            code = 0
    except SystemExit as done:
        code = done.code
    if code not in (0, None):
        print(json.dumps({"failed": line, "code": code}))
        sys.exit(1)
"""


@pytest.mark.slow  # runs the commands, generating tiny data sets
@pytest.mark.parametrize("case", READMES)
def test_readme_commands_run_as_pasted(case, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(CASES.parent), "TF_CPP_MIN_LOG_LEVEL": "3"}
    lines = commands(case)
    assert all(shlex.split(line)[:2] == ["python", "-m"] for line in lines
               if not line.startswith("modelzoo ")), lines
    done = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(lines)], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout[-1000:], done.stderr[-2000:])
