"""Directories a command writes whole or not at all."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def write_whole(out: Path, what: str, make: Callable[[Path], T]) -> T:
    """`make(work)` fills a fresh directory next to `out`, which takes `out`'s place only once
    `make` has returned: on any failure nothing is left at `out` (an older directory there stays
    as it was), and a reader never sees a directory half written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.{what}-", dir=out.parent))
    try:
        result = make(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    return result
