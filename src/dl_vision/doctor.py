"""Environment doctor (being written; see bootstrap/setup.sh)."""
from __future__ import annotations

from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the process exit status."""
    print("doctor: not implemented yet")
    return 1
