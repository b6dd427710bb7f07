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


@pytest.fixture
def compiles_like_eager():
    """The check below, as a fixture (tests import nothing from conftest)."""
    return _assert_compiles_like_eager


def _assert_compiles_like_eager(module: torch.nn.Module, inputs: list[tuple], loss=lambda out: out.square().sum()):
    """``torch.compile(module, fullgraph=True, dynamic=True)`` on each input tuple (batches of
    different sizes): forward and backward must run without a graph break (fullgraph raises on
    one) and match eager outputs and gradients. ``aot_eager`` traces forward and backward through
    dynamo and AOTAutograd without inductor's code generation (seconds, not minutes, on CPU)."""
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="aot_eager")
    params = [p for p in module.parameters() if p.requires_grad]
    for args in inputs:
        grads = []
        for fn in (compiled, module):
            module.zero_grad(set_to_none=True)
            leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            for leaf in leaves:
                leaf.grad = None
            out = fn(*args)
            loss(out).backward()
            grads.append((out.detach(), [p.grad for p in params], [leaf.grad for leaf in leaves]))
        (out_c, pg_c, lg_c), (out_e, pg_e, lg_e) = grads
        torch.testing.assert_close(out_c, out_e)
        for a, b in zip(pg_c + lg_c, pg_e + lg_e):
            if b is None:
                assert a is None
            else:
                torch.testing.assert_close(a, b)
    torch._dynamo.reset()
