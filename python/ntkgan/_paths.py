"""Output directories checked before any work: one clear ``ValueError`` instead of a late ``OSError``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_writable_dir"]


def check_writable_dir(path, what: str = "out_dir") -> Path:
    """``path`` as a Path, after checking that it is (or can be created as) a directory this process may
    write in.

    Raises
    ------
    ValueError
        ``path`` exists and is not a directory; an ancestor is a file; or the nearest existing ancestor
        refuses a new directory (permissions, a read-only or pseudo file system such as ``/proc``).  The
        message names ``what`` and the path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} exists and is not a directory")
    ancestor = path if path.exists() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{what} {str(path)!r}: {str(ancestor)!r} is a file, not a directory")
    try:  # the only reliable writability test (permissions, read-only and pseudo file systems)
        probe = tempfile.mkdtemp(prefix=".ntkgan-probe-", dir=ancestor)
    except OSError as exc:
        raise ValueError(f"{what} {str(path)!r}: cannot create it in {str(ancestor)!r} "
                         f"({exc.strerror or exc})") from None
    os.rmdir(probe)
    return path
