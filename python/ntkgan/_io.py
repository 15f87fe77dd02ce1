"""Files written whole or not at all: bytes, text, JSON, CSV, ``.npz`` and anything a library writes by name.

Every writer goes through a temporary file beside the target, ``.<name>.tmp-<pid>-<thread><suffix>``, and
``os.replace``: a reader (a resumed run, a sweep deciding what is finished, a person) sees the old file or
the new one, never half of one, and a writer killed mid-way leaves the target as it was (its temporary file
is removed on any error).  Temporary names are unique per process and thread, so concurrent writers of the
same target (two sweep workers) do not collide; the last ``os.replace`` wins.  Files get the process's
umask like any ``open``.

Bytes are reproducible: :func:`npz_bytes` fixes the archive's timestamps and member order, and
:func:`format_value` writes floats by ``repr`` (they read back exactly), so the same numbers give the
same files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import numbers
import os
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "atomic_target",
    "atomic_write_bytes",
    "atomic_write_text",
    "format_value",
    "npz_bytes",
    "write_csv",
    "write_json",
    "write_npz",
]


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")


@contextlib.contextmanager
def atomic_target(path) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (same suffix, so libraries that infer the format from it
    still do); on a normal exit it replaces ``path``, on an error it is removed.

    For writers that want a file name (``Figure.savefig``, an animation writer)::

        with atomic_target("metrics.png") as tmp:
            fig.savefig(tmp)
    """
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        yield os.fspath(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (flushed and ``fsync``-ed before the rename); the
    parent directory is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, data, *, sort_keys: bool = False) -> None:
    """``data`` as indented JSON (two spaces) with a final newline, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def npz_bytes(arrays: dict, *, compress: bool = False) -> bytes:
    """An ``.npz`` archive of ``arrays`` (members sorted by name, timestamps fixed at 1980-01-01; deflated
    when ``compress``), so equal arrays give equal bytes; ``numpy.load`` reads it."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_npz(path, arrays: dict, *, compress: bool = False) -> None:
    """:func:`npz_bytes` of ``arrays``, written atomically."""
    atomic_write_bytes(path, npz_bytes(arrays, compress=compress))


def format_value(value) -> str:
    """CSV cell: ints as is, floats by ``repr`` (round-trips exactly), NaN/None empty, others ``str``."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (numbers.Integral, np.integer)):
        return str(int(value))
    if isinstance(value, (numbers.Real, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    return str(value)


def write_csv(path, columns: Sequence[str], rows) -> None:
    """A CSV file with a header ``columns`` and one line per row (a dict or a sequence; cells by
    :func:`format_value`), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [row.get(c) for c in columns] if isinstance(row, dict) else row
        writer.writerow([format_value(v) for v in values])
    atomic_write_text(path, buf.getvalue())
