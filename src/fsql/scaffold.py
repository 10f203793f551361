"""``fsql init``: write a small working project that ``fsql build`` builds at once.

The definition files are copied from ``fsql/starter/`` (with ``__project__`` replaced by the
project name); the sample data, card payments as two CSV files, is generated here from a fixed
seed, so every ``fsql init`` writes the same bytes.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from fsql.errors import RequestError

PLACEHOLDER = "__project__"
SEED = 7
CARDS = 200
TRANSACTIONS = 5000
#: the sample data ends here (fixed, so builds are reproducible)
END = datetime(2025, 1, 1)
DAYS = 90
COUNTRIES = ("DE", "FR", "GB", "NL", "US")
CATEGORIES = ("grocery", "travel", "online", "fuel", "restaurant")


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What ``init`` wrote: the project's name and directory, and its files."""

    name: str
    root: Path
    files: tuple[Path, ...]


def project_name(directory: Path) -> str:
    """A project name from a directory name: lower case letters, digits and underscores."""
    name = re.sub(r"[^a-z0-9_]+", "_", directory.resolve().name.lower()).strip("_")
    if not name:
        return "features"
    return f"p_{name}" if name[0].isdigit() else name


def init(directory: Path) -> Scaffold:
    """Write the starter project into ``directory`` (created if missing; must be empty)."""
    if directory.exists() and not directory.is_dir():
        raise RequestError(f"cannot create a project in {directory}: it is a file; give fsql "
                           "init a new or empty directory")
    if directory.is_dir() and any(directory.iterdir()):
        held = sorted(p.name for p in directory.iterdir())
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise RequestError(f"{directory} is not empty (it holds {shown}); fsql init writes only "
                           "into a new or empty directory: give it another DIR, e.g. "
                           "fsql init my_features")
    name = project_name(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = _copy(files("fsql") / "starter", directory, name)
    written += _write_data(directory / "data")
    return Scaffold(name, directory, tuple(written))


def _copy(source: Traversable, dest: Path, name: str) -> list[Path]:
    written = []
    for item in sorted(source.iterdir(), key=lambda t: t.name):
        target = dest / item.name
        if item.is_dir():
            target.mkdir()
            written += _copy(item, target, name)
        elif item.name.endswith((".yml", ".sql")):
            target.write_text(item.read_text(encoding="utf-8").replace(PLACEHOLDER, name),
                              encoding="utf-8")
            written.append(target)
    return written


def _write_data(data: Path) -> list[Path]:
    """Cards and their transactions; about 2% of transactions are fraud, more often the
    large ones on cards already spending fast."""
    rng = random.Random(SEED)
    data.mkdir()
    start = END - timedelta(days=DAYS)
    cards = [(card_id, start - timedelta(seconds=rng.randrange(365 * 86400)),
              rng.choice(COUNTRIES), rng.choice((500, 1000, 2000, 5000)))
             for card_id in range(1, CARDS + 1)]
    times = sorted(start + timedelta(seconds=rng.randrange(DAYS * 86400))
                   for _ in range(TRANSACTIONS))
    transactions = []
    for transaction_id, ts in enumerate(times, start=1):
        card_id = rng.randrange(1, CARDS + 1)
        amount = round(rng.lognormvariate(3.5, 1.0), 2)
        fraud = rng.random() < (0.15 if amount > 200 else 0.01)
        transactions.append((transaction_id, card_id, _iso(ts), rng.choice(CATEGORIES),
                             amount, "true" if fraud else "false"))
    return [
        _csv(data / "cards.csv", ("card_id", "opened_at", "country", "credit_limit"),
             [(c, _iso(opened), country, limit) for c, opened, country, limit in cards]),
        _csv(data / "transactions.csv",
             ("transaction_id", "card_id", "ts", "merchant_category", "amount", "is_fraud"),
             transactions),
    ]


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def _csv(path: Path, header: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path
