"""The README's quick start stays the two commands CI runs (docs checks: test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"
CI = Path(__file__).parents[2] / ".ci" / "run"


def test_quick_start__has_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert len(commands) == 2 and "streamseg dev" in commands[0]
    test_cmd = commands[1].split("&&")[-1].strip()
    assert re.search(rf"^{re.escape(test_cmd)}$", CI.read_text(), re.M), test_cmd
