"""Test configuration.

Triton kernels run in interpreter mode on CPU tensors when no GPU is present, so CI checks them
without one. The variable must be set before triton is imported anywhere.
"""

import os
import pathlib

os.environ.setdefault("TRITON_INTERPRET", "0" if os.environ.get("GNNKIT_TEST_GPU") == "1" else "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("GNNKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(
            f"benchmark graphs not found at {SHARED_DATA}; set GNNKIT_SHARED_DATA to the shared/data folder"
        )
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: tiny tensors gain nothing from threads, and on a shared
    2-core CI machine a parallel op can wait on a descheduled OpenMP worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
