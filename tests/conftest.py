"""Test configuration.

Triton kernels run in interpreter mode on CPU tensors when no GPU is present, so CI checks them
without one. The variable must be set before triton is imported anywhere.

The suite reads nothing outside the repository: the node-classification tests use the raw graphs
committed under ``datasets/`` (copied to a temporary folder, since PyG writes ``processed/``
beside ``raw/``), and the network is never needed.
"""

import os
import pathlib
import shutil
import socket

os.environ.setdefault("TRITON_INTERPRET", "0" if os.environ.get("GNNKIT_TEST_GPU") == "1" else "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATASETS = REPO / "datasets"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def _copy_datasets(dst: pathlib.Path, *folders: str) -> pathlib.Path:
    """Copies the committed dataset folders (paths relative to ``datasets/``, e.g.
    ``"webkb/texas"``) into the data root ``dst``, without any ``processed/`` or ``cache/``."""
    for folder in folders:
        src = DATASETS / folder
        if not (src / "raw").is_dir() and not any(src.glob("*/raw")):
            raise FileNotFoundError(f"no raw files committed under {src}")
        shutil.copytree(src, dst / folder, ignore=shutil.ignore_patterns("processed", "cache"))
    return dst


@pytest.fixture(scope="session")
def copy_datasets():
    """``copy_datasets(dst, "webkb/texas", ...)``: copies committed dataset folders into ``dst``."""
    return _copy_datasets


@pytest.fixture(scope="session")
def node_data_root(tmp_path_factory) -> pathlib.Path:
    """A data root with writable copies of the committed Texas and Cora raw files, shared by the
    session so that PyG processes each graph once. Tests that change files make their own copy."""
    return _copy_datasets(tmp_path_factory.mktemp("node_data"), "webkb/texas", "planetoid/Cora")


_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0"}
_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Every test runs offline: resolving a remote host fails as on a machine without network
    (urllib, fsspec and aiohttp all resolve through ``socket.getaddrinfo``), so a missing file
    can never be hidden by a download. Local addresses still resolve."""

    def getaddrinfo(host, *args, **kwargs):
        if host in _LOCAL_HOSTS or host == socket.gethostname():
            return _getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_AGAIN, f"Temporary failure in name resolution ({host}: tests run offline)")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


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


def _grad_leaves(args: tuple) -> list[torch.Tensor]:
    """Every tensor that requires grad inside ``args``, also inside (nested) tuples, lists and
    dicts such as a bipartite ``(h, x)`` input, so that each gets its compiled gradient compared."""
    return [a for a in torch.utils._pytree.tree_leaves(args) if isinstance(a, torch.Tensor) and a.requires_grad]


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
            leaves = _grad_leaves(args)
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
