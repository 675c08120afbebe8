"""Reading a Flower ``Array``'s values without parsing its npy header every time.

``Array.numpy`` loads the npy bytes with ``np.load``, which parses the header
dict with ``ast.literal_eval``: about 0.1 ms an array. A round of 30 replies of
86 arrays (and as many gradient scales) spends most of the server's time
there, and that time is the simulation's overhead. An ``Array`` made from a
C-ordered numpy array carries the header ``np.save`` writes for its dtype and
shape; that header is built once per (dtype, shape), and bytes that start with
it are read in place. Anything else (a Fortran-ordered array, another npy
version, a header that disagrees with the Array's own dtype or shape, bytes
that are no array) goes through ``Array.numpy``, which reads or refuses it as
before.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from flwr.app import Array

NUMPY_STYPE = "numpy.ndarray"


@lru_cache(maxsize=4096)
def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The npy 1.0 header ``np.save`` writes for a C-ordered array of ``dtype`` and ``shape``."""
    like = np.broadcast_to(np.zeros((), np.dtype(dtype)), shape)  # no memory for the values
    header = np.lib.format.header_data_from_array_1_0(like)
    header["fortran_order"] = False
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def array_values(array: Array) -> np.ndarray:
    """The array's values (read-only when read in place); what ``Array.numpy`` would return."""
    try:
        dtype = np.dtype(array.dtype)
        shape = tuple(int(size) for size in array.shape)
    except (TypeError, ValueError):
        return array.numpy()
    if array.stype != NUMPY_STYPE or dtype.hasobject or any(size < 0 for size in shape):
        return array.numpy()
    header = npy_header(str(dtype), shape)
    count = math.prod(shape)
    data = array.data
    if len(data) != len(header) + count * dtype.itemsize or not data.startswith(header):
        return array.numpy()
    return np.frombuffer(data, dtype, count, offset=len(header)).reshape(shape)
