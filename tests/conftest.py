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
