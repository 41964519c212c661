"""Flow tests run single-threaded.

A flow evaluates thousands of tiny tensor operations (n·k ≤ 12 here). Several ATen kernels (log_softmax,
A·Aᵀ products) open an OpenMP region whatever the size; with two threads on a shared, loaded
machine each such region waits for the second thread's time slice (measured: 6 ms for a 2 × 3
log_softmax), which made these tests 5–10× slower without changing a single number.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
