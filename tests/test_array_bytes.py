"""Reading Flower Arrays in place: the values ``Array.numpy`` gives, or its refusal."""

import numpy as np
import pytest
from flwr.app import Array

from fedcore.federation.array_bytes import array_values, npy_header


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array(2.5, np.float32),
        np.zeros((0, 5)),
        np.arange(10, dtype=np.int64),
        np.array([True, False]),
        np.arange(24.0).reshape(2, 3, 4)[:, ::2],  # not contiguous: saved as a copy
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),  # saved in Fortran order
    ],
)
def test_values_are_those_flower_reads(value):
    array = Array(value)
    got, expected = array_values(array), array.numpy()
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_a_c_ordered_array_is_read_in_place_from_its_bytes():
    array = Array(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert array.data.startswith(npy_header("float32", (2, 3)))
    assert not array_values(array).flags.writeable  # a view of the message's bytes


def test_bytes_that_disagree_with_the_header_go_to_flower_and_are_refused():
    data = Array(np.arange(4, dtype=np.float32)).data
    for tampered in (data[:-1], data.replace(b"(4,)", b"(5,)"), b"not an npy file"):
        array = Array(dtype="float32", shape=(4,), stype="numpy.ndarray", data=tampered)
        with pytest.raises(ValueError):
            array_values(array)
