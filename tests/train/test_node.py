"""Selection and stopping rules of the node-classification loop."""

import pytest
import torch
import torch.nn.functional as F

from gnnkit.train.node import masked_accuracy, train_node_classifier


def problem(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).long()
    idx = torch.randperm(n, generator=g)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    for m, part in zip(masks, (idx[:20], idx[20:40], idx[40:])):
        m[part] = True
    return x, y, masks


class Recorder:
    """Wraps a model's forward and keeps the eval-mode metrics of every epoch."""

    def __init__(self, model, x, y, masks):
        self.model, self.x, self.y, self.masks, self.log = model, x, y, masks, []

    def __call__(self):
        out = self.model(self.x)
        if not self.model.training:
            _, val, test = self.masks
            self.log.append((float(F.cross_entropy(out[val], self.y[val])), masked_accuracy(out, self.y, val), masked_accuracy(out, self.y, test)))
        return out


def test_val_loss_selection_and_early_stopping():
    x, y, masks = problem()
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    rec = Recorder(model, x, y, masks)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    res = train_node_classifier(model, rec, opt, y, *masks, epochs=200, select="val_loss", early_stopping=5)
    losses = [r[0] for r in rec.log]
    assert res.epochs_run == len(losses)
    assert res.epoch == min(range(len(losses)), key=losses.__getitem__)
    assert res.test_acc == rec.log[res.epoch][2] and res.val_loss == pytest.approx(losses[res.epoch])
    if res.epochs_run < 200:  # stopped by the rule: current loss above the mean of the last 5
        assert res.epochs_run - 1 > 100 and losses[-1] > sum(losses[-6:-1]) / 5


def test_val_acc_patience_and_on_improve():
    x, y, masks = problem(seed=1)
    model = torch.nn.Linear(4, 2)
    rec = Recorder(model, x, y, masks)
    calls = []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = train_node_classifier(
        model, rec, opt, y, *masks, epochs=300, select="val_acc", patience=15, on_improve=lambda logits: calls.append(logits.shape)
    )
    accs = [r[1] for r in rec.log]
    first_best = accs.index(max(accs))
    assert res.epoch == first_best and res.val_acc == max(accs)
    assert len(calls) == sum(1 for i, a in enumerate(accs) if a > max([0.0] + accs[:i]))
    assert res.epochs_run == len(accs) and (res.epochs_run == 300 or res.epochs_run - 1 - first_best == 15)


def test_last_and_errors():
    x, y, masks = problem()
    model = torch.nn.Linear(4, 2)
    rec = Recorder(model, x, y, masks)
    res = train_node_classifier(model, rec, torch.optim.SGD(model.parameters(), lr=0.1), y, *masks, epochs=7, select="last")
    assert res.epoch == 6 and res.test_acc == rec.log[-1][2]
    with pytest.raises(ValueError, match="select"):
        train_node_classifier(model, rec, None, y, *masks, epochs=1, select="best")
    with pytest.raises(ValueError, match="val_mask"):
        train_node_classifier(model, rec, None, y, masks[0], masks[1].long(), masks[2], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_node_classifier(model, rec, None, y, *masks, epochs=0)
