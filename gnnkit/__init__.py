"""gnnkit: graph neural networks for PyTorch.

Layers take PyG-style tensors (``x``, ``edge_index`` with row 0 = source, ``edge_attr``), so they
drop into PyG models; underneath are sparse scatter kernels (torch on CPU, Triton on CUDA).

``gnnkit.ops``, ``gnnkit.nn`` and ``gnnkit.models`` are imported with the package;
``gnnkit.data`` (RDKit featurizer, datasets) and ``gnnkit.train`` (the training loops) are
imported on first use (``import gnnkit.data``), so that a user who only wants the layers does not
pay for RDKit.
"""

from gnnkit import models, nn, ops

__version__ = "0.1.0"
__all__ = ["ops", "nn", "models", "__version__"]
