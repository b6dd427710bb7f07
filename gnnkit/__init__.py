"""gnnkit: graph neural networks for PyTorch.

Layers take PyG-style tensors (``x``, ``edge_index`` with row 0 = source, ``edge_attr``), so they
drop into PyG models; underneath are sparse scatter kernels (torch on CPU, Triton on CUDA).
"""

from gnnkit import nn, ops

__version__ = "0.1.0"
__all__ = ["ops", "nn", "__version__"]
