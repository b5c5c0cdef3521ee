"""Refuse oversized inputs from the sizes they declare, before anything is decompressed or loaded.

A ``.npz`` declares each array's shape and dtype in its ``.npy`` header and each member's
uncompressed size in the zip directory; a ``.keras`` file is a zip whose directory declares
every member's size. Python's ``zipfile`` never inflates a member past its declared size, so
checking the declarations bounds the memory a later ``np.load`` or Keras load can take.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from common.errors import DataError, ModelError

# One array: four times full MNIST as float32 (70,000 x 28 x 28 x 4 B = 220 MB) still fits.
MAX_ARRAY_BYTES = 1 << 30
# A whole .npz, uncompressed: room for x, y and labels of the largest allowed array.
MAX_NPZ_BYTES = 1 << 31
# A .keras archive, uncompressed: a model for a board with 1 MB of flash is far smaller, even
# as float32 with optimizer state.
MAX_KERAS_BYTES = 256 << 20
# Enough for every .npy header numpy writes (format 1.0/2.0/3.0 headers are padded to 64 bytes).
_HEADER_READ = 1 << 16


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def npz_declarations(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's (shape, dtype) as the .npz declares it, after refusing oversized declarations."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > MAX_NPZ_BYTES:
                raise DataError(f"{path} declares {_mib(total)} of arrays, more than the "
                                f"{_mib(MAX_NPZ_BYTES)} this tool reads")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(fh, max_header_size=_HEADER_READ)
                size = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
                name = info.filename[:-4]
                if size > MAX_ARRAY_BYTES:
                    shown = "x".join(str(d) for d in shape)
                    raise DataError(f"{path}: array {name} declares shape ({shown}) of {dtype}, "
                                    f"{_mib(size)}, more than the {_mib(MAX_ARRAY_BYTES)} this tool reads")
                out[name] = (tuple(shape), dtype)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a .npz file") from None
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, TypeError) as exc:
        raise DataError(f"{path} is not a valid .npz file: {_first(exc)}") from None
    return out


def check_npz_file(path: Path, what: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``npz_declarations`` plus the shapes a ``what`` ("dataset") file must have."""
    declared = npz_declarations(path)
    if what == "dataset" and "y" in declared and len(declared["y"][0]) != 1:
        raise DataError(f"{path}: y must hold one label per sample (N,), got shape {declared['y'][0]}")
    return declared


def check_keras_file(path: Path) -> None:
    """Refuse a .keras archive whose members declare more than ``MAX_KERAS_BYTES``."""
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a .keras file") from None
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelError(f"cannot load Keras model {path}: not a .keras archive ({_first(exc)})") from None
    if total > MAX_KERAS_BYTES:
        raise ModelError(f"{path} declares {_mib(total)} uncompressed, more than the "
                         f"{_mib(MAX_KERAS_BYTES)} a model for this board can need")
