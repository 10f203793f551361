"""The repository's example project, copied into a temporary directory for a test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT_PARTS = ("fsql_project.yml", "features", "models", "macros")


def copy_example(dest: Path, end: str | None = "2025-01-01") -> Path:
    """Copy the example project (with freshly generated demo data) to ``dest``.

    ``end`` fixes the data's last day, so offline results are stable; ``None`` means today
    (what online tests need, since the store expires values by wall-clock time).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        else:
            shutil.copy(src, dest / part)
    args = ["--end", end] if end else []
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_demo_data.py"),
                    "--out", str(dest / "data"), *args], check=True, capture_output=True)
    return dest
