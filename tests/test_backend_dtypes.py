"""The backends read a config's data types through repository.dtypes, the one dtype table."""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.repository.dtypes import TRITON_DTYPES, to_numpy_dtype
from tritonkit.server.backends.base import TensorInfo


@pytest.mark.parametrize("name", [name for name in TRITON_DTYPES if name != "BF16"])
def test_every_numpy_backed_dtype_reads_as_the_table_says(name):
    config_name = "TYPE_STRING" if name == "BYTES" else f"TYPE_{name}"
    info = TensorInfo.from_config({"name": "x", "data_type": config_name, "dims": [2, "3"]})
    assert info.dtype == to_numpy_dtype(name) and info.dims == (2, 3)


def test_a_dtype_without_numpy_names_the_tensor_and_the_type():
    with pytest.raises(ValueError, match=r"^tensor 'x': data type TYPE_BF16 is not supported by tritonkit$"):
        TensorInfo.from_config({"name": "x", "data_type": "TYPE_BF16", "dims": [1]})
    assert TensorInfo.from_config({"name": "s", "data_type": "TYPE_STRING", "dims": []}).dtype == np.dtype(object)
