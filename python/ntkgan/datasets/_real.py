"""Image data sets: scikit-learn's bundled 8 x 8 digits (offline) and a local MNIST file (IDX or npz).

Pixels map to ``[-1, 1]`` as the paper's toolkit does: intensity ``v in [0, 1]`` goes to
``x = 1.999 (v - 1/2) in [-0.9995, 0.9995]`` (strictly inside, so an ``atanh`` transform stays finite).
The source is ``N(0, I_D)`` particles of the same dimension.

References
----------
.. [1] Franceschi et al. A Neural Tangent Kernel Perspective of GANs. ICML 2022 (toolkit gantk2,
   ``data/mnist.py``, ``data/factory.py``).
.. [2] LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition.
   Proc. IEEE 1998 (MNIST and its IDX file format).
.. [3] Alpaydin, Kaynak. Optical Recognition of Handwritten Digits. UCI repository, 1998 (the digits
   bundled with scikit-learn).
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np

from ntkgan.datasets._base import Dataset, check_count, check_dim, seed_record, standard_normal, streams

__all__ = ["PIXEL_SCALE", "center_crop", "digits", "mnist", "read_idx", "read_mnist"]

PIXEL_SCALE = 1.999
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NPZ_KEYS = ("x_train", "train_images", "images", "x", "arr_0")
_DEFAULT_N = 1024


def _pixels_to_unit(images: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1]: integers are divided by 255, floats must already lie in [0, 1]."""
    if images.dtype.kind in "ui":
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(f"integer pixels must lie in [0, 255], got [{images.min()}, {images.max()}]")
        return images.astype(np.float64) / 255.0
    images = images.astype(np.float64)
    if images.size and not (np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0):
        raise ValueError("float pixels must be finite and lie in [0, 1]")
    return images


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad images (n, h, w) to (n, size, size), like torchvision's ``CenterCrop``.

    A side longer than ``size`` loses ``round((h - size) / 2)`` rows at the top; a shorter one gets
    ``(size - h) // 2`` zero rows at the top and the rest at the bottom (28 -> 32: 2 and 2).
    """
    out = images
    for axis in (1, 2):
        length = out.shape[axis]
        if length > size:
            start = int(round((length - size) / 2.0))
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif length < size:
            before = (size - length) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, size - length - before)
            out = np.pad(out, pad)
    return out


def _image_dataset(images01, name, *, n_source, n_target, seed, dim, image_shape, target_desc) -> Dataset:
    """Source ``N(0, I_D)``; target a seeded random subset of ``1.999 (v - 1/2)``, flattened row-major."""
    total = images01.shape[0]
    flat = images01.reshape(total, -1)
    check_dim(dim, flat.shape[1], name)
    n_source = check_count(_DEFAULT_N if n_source is None else n_source, "n_source")
    n_target = check_count(min(_DEFAULT_N, total) if n_target is None else n_target, "n_target")
    if n_target > total:
        raise ValueError(f"n_target must be <= {total} (the images available in {name!r}), got {n_target}")
    rng_source, rng_target = streams(seed)
    chosen = rng_target.permutation(total)[:n_target]
    return Dataset(
        name=name,
        source=standard_normal(n_source, flat.shape[1], rng_source),
        target=PIXEL_SCALE * (flat[chosen] - 0.5),
        meta={
            "source": f"N(0, I_{flat.shape[1]})",
            "target": target_desc,
            "seed": seed_record(seed),
            "image_shape": image_shape,
            "target_indices": chosen,
            "pixel_map": "x = 1.999 (v - 1/2), v in [0, 1]",
        },
    )


def digits(*, n_source: int | None = None, n_target: int | None = None, seed=0, dim: int | None = None):
    """Source ``N(0, I_64)``; target 1024 of scikit-learn's 1797 8 x 8 digits, ``x = 1.999 (v/16 - 1/2)``.

    The offline stand-in for MNIST: 64-D, pixels in ``[-0.9995, 0.9995]``, a random subset fixed by
    the seed (all 1797 with ``n_target=1797``).

    Parameters
    ----------
    n_source : int, default=1024
    n_target : int, default=1024
        At most 1797.
    seed : int or numpy.random.Generator, default=0
    dim : None or 64

    Returns
    -------
    Dataset
        ``meta["image_shape"] = (8, 8, 1)``; ``meta["target_indices"]`` the digits chosen.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is in the test extra
        raise ImportError('the "digits" dataset needs scikit-learn (pip install scikit-learn)') from exc
    images = load_digits().images / 16.0
    return _image_dataset(images, "digits", n_source=n_source, n_target=n_target, seed=seed, dim=dim,
                          image_shape=(8, 8, 1), target_desc="scikit-learn digits 8x8")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (MNIST's format), plain or gzipped.

    The header is two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D
    float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian uint32; the
    data follow in C order, big-endian.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ndarray
        Of the stored shape and type (native byte order).

    Raises
    ------
    ValueError
        If the file is missing, has a bad header, or its size does not match the header.
    """
    path = _existing(path, "IDX")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"could not decompress {str(path)!r}: {exc}") from None
    return _parse_idx(raw, str(path))


def _parse_idx(raw: bytes, where: str) -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(f"{where!r} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{where!r}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{where!r}: IDX header says shape {shape} ({expected} bytes) but the file has {len(raw)}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _existing(path, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{what} path must be a non-empty string or path, got {path!r}")
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise ValueError(f"{what} file {str(p)!r} does not exist")
    return p


def read_mnist(path) -> np.ndarray:
    """Read MNIST-like images (n, h, w) from an IDX file (plain or .gz) or an ``.npz`` archive.

    An npz archive is searched for the keys ``x_train``, ``train_images``, ``images``, ``x``, ``arr_0`` in
    that order (Keras' ``mnist.npz`` has ``x_train``), or holds a single array.  Shapes (n, h, w),
    (n, h, w, 1) and (n, 784) (read as 28 x 28) are accepted.

    Returns
    -------
    ndarray of shape (n, h, w)
        As stored (uint8 for MNIST).

    Raises
    ------
    ValueError
        If the file is missing, unreadable, or holds no array of image shape.
    """
    path = _existing(path, "MNIST")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PK\x03\x04":
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ValueError(
                        f"{str(path)!r}: no image array among keys {keys}; expected one of {_NPZ_KEYS}"
                    )
                images = np.asarray(archive[key])
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"could not read npz {str(path)!r}: {exc}") from None
    else:
        images = read_idx(path)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    elif images.ndim == 2 and images.shape[1] == 784:
        images = images.reshape(-1, 28, 28)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"{str(path)!r}: expected images of shape (n, h, w), got {images.shape}")
    return images


def mnist(path, *, n_source: int | None = None, n_target: int | None = None, seed=0, dim: int | None = None,
          pad: bool = True) -> Dataset:
    """Source ``N(0, I_D)``; target 1024 images of a local MNIST file, ``x = 1.999 (v - 1/2)``, flattened.

    The paper's ``mnist`` preset [1]_: images centre-padded 28 -> 32 (``CenterCrop(32)``, D = 1024), a
    random subset fixed by the seed.  Nothing is downloaded.

    Parameters
    ----------
    path : str or os.PathLike
        An IDX images file (e.g. ``train-images-idx3-ubyte`` or its ``.gz``) or an ``.npz``
        (see :func:`read_mnist`).
    n_source : int, default=1024
    n_target : int, default=min(1024, number of images)
    seed : int or numpy.random.Generator, default=0
    dim : None or D
    pad : bool, default=True
        Centre-crop/pad to 32 x 32 as the paper; ``False`` keeps the stored size (784-D for MNIST).

    Returns
    -------
    Dataset
        ``meta["image_shape"] = (h, w, 1)``; ``meta["target_indices"]`` the images chosen.

    Raises
    ------
    ValueError
        As :func:`read_mnist`, or if ``n_target`` exceeds the number of images.
    """
    images = read_mnist(path)
    unit = _pixels_to_unit(images)
    if pad:
        unit = center_crop(unit, 32)
    return _image_dataset(unit, f"mnist:{os.fspath(path)}", n_source=n_source, n_target=n_target, seed=seed,
                          dim=dim, image_shape=(unit.shape[1], unit.shape[2], 1),
                          target_desc=f"MNIST images from {os.fspath(path)}")
