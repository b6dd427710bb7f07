"""Full-batch training for transductive node classification, with the model-selection rules of
the papers gnnkit reproduces.

``select`` decides which epoch's test accuracy is reported:

* ``"val_loss"`` (TDGNN, yuwvandy/TDGNN ``main.py``): the epoch with the lowest validation loss.
  With ``early_stopping = w > 0``, once ``epoch > early_stopping_start`` (TDGNN: ``epochs // 2``)
  training stops when the validation loss exceeds the mean of the previous ``w`` losses.
* ``"val_acc"`` (NHGCN, rockcor/NHGCN ``main.py``): the first epoch reaching the highest
  validation accuracy (strict improvement); training stops after ``patience`` epochs without one.
  ``on_improve(logits)`` is called with the evaluation logits at each improvement (NHGCN
  re-estimates neighbourhood homophily there).
* ``"last"`` (Kipf & Welling's GCN code): the model at the end of training, with the same
  val-loss window rule (Kipf: ``early_stopping = 10`` from epoch 10).

Each epoch is one optimiser step on the training nodes followed by one evaluation pass in eval
mode (no dropout) over all nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NodeResult", "train_node_classifier", "masked_accuracy"]


@dataclass
class NodeResult:
    """Outcome of one training run.

    Attributes:
        test_acc: test accuracy at the selected epoch.
        val_acc: validation accuracy at the selected epoch.
        val_loss: validation loss at the selected epoch.
        epoch: the selected epoch (0-based).
        epochs_run: epochs actually trained.
    """

    test_acc: float
    val_acc: float
    val_loss: float
    epoch: int
    epochs_run: int


def masked_accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Share of ``mask``-ed nodes whose argmax matches ``y`` (0 for an empty mask)."""
    n = int(mask.sum())
    return float((logits[mask].argmax(1) == y[mask]).sum()) / n if n else 0.0


def train_node_classifier(
    model: nn.Module,
    forward: Callable[[], Tensor],
    optimizer: torch.optim.Optimizer,
    y: Tensor,
    train_mask: Tensor,
    val_mask: Tensor,
    test_mask: Tensor,
    epochs: int,
    select: Literal["val_loss", "val_acc", "last"] = "val_loss",
    early_stopping: int = 0,
    early_stopping_start: int | None = None,
    patience: int = 0,
    on_improve: Callable[[Tensor], None] | None = None,
) -> NodeResult:
    """Trains ``model`` full-batch and returns the test accuracy under the ``select`` rule.

    Args:
        model: the module (switched between ``train()`` and ``eval()``).
        forward: computes the logits ``[N, C]`` of all nodes (closes over the inputs, so that
            ``on_improve`` may swap them, e.g. rebuilt adjacencies).
        optimizer: optimiser over the model's parameters.
        y: ``[N]`` labels.
        train_mask, val_mask, test_mask: ``[N]`` bool masks.
        epochs: maximum number of epochs.
        select: ``"val_loss"``, ``"val_acc"`` or ``"last"`` (see the module docstring).
        early_stopping: window of the val-loss rule (0: off).
        early_stopping_start: the rule applies once ``epoch > early_stopping_start``
            (default ``epochs // 2``, TDGNN's).
        patience: for ``"val_acc"``: stop after this many epochs without improvement (0: off).
        on_improve: called with the eval logits whenever the selected metric improves.
    """
    if select not in ("val_loss", "val_acc", "last"):
        raise ValueError(f"select must be 'val_loss', 'val_acc' or 'last', got {select!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if early_stopping < 0 or patience < 0:
        raise ValueError(f"early_stopping and patience must be >= 0, got {early_stopping}, {patience}")
    for name, m in (("train_mask", train_mask), ("val_mask", val_mask), ("test_mask", test_mask)):
        if m.dtype != torch.bool or m.shape != y.shape:
            raise ValueError(f"{name} must be a bool tensor of shape {tuple(y.shape)}, got {m.dtype} {tuple(m.shape)}")
    start = epochs // 2 if early_stopping_start is None else early_stopping_start
    best = NodeResult(0.0, 0.0, float("inf"), -1, 0)
    best_acc = 0.0  # NHGCN starts from best_acc = 0 and needs a strict improvement
    val_losses: list[float] = []
    waited = 0
    for epoch in range(epochs):
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(forward()[train_mask], y[train_mask])
        loss.backward()
        optimizer.step()

        model.eval()
        with torch.no_grad():
            logits = forward()
            val_loss = float(F.cross_entropy(logits[val_mask], y[val_mask]))
        val_acc = masked_accuracy(logits, y, val_mask)
        current = NodeResult(masked_accuracy(logits, y, test_mask), val_acc, val_loss, epoch, epoch + 1)
        improved = (
            val_loss < best.val_loss if select == "val_loss" else val_acc > best_acc if select == "val_acc" else True
        )
        if improved:
            best, waited = current, 0
            best_acc = max(best_acc, val_acc)
            if on_improve is not None:
                on_improve(logits)
        else:
            waited += 1
        best.epochs_run = epoch + 1
        val_losses.append(val_loss)
        if early_stopping > 0 and epoch > start:
            window = val_losses[-(early_stopping + 1) : -1]
            if val_loss > sum(window) / len(window):
                break
        if select == "val_acc" and patience > 0 and waited >= patience:
            break
    return best
