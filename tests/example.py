"""The repository's example project, copied into a temporary directory for a test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT_PARTS = ("fsql_project.yml", "features", "models", "macros")


def copy_example(dest: Path) -> Path:
    """Copy the example project (with freshly generated demo data) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        else:
            shutil.copy(src, dest / part)
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_demo_data.py"),
                    "--out", str(dest / "data")], check=True, capture_output=True)
    return dest
