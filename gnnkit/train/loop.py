"""A model-agnostic training loop for graph-level regression.

``fit`` trains any ``model(batch) -> [num_graphs, T]`` with MSE on encoded targets and reports
MAE in physical units: per-epoch validation MAE, test MAE at the best validation epoch. It handles
the device, optional AMP (bf16 autocast on CUDA), DDP (when a process group is initialised, e.g.
by ``torchrun``), an atomic checkpoint every epoch (the previous one kept), resuming from it, a CSV log and a
learning-curve PNG.

Resuming is exact: batch order comes from ``(seed, epoch)`` through the sampler (see
:func:`gnnkit.train.make_loader`), and the checkpoint holds model, optimizer, scheduler and every
RNG state; on CPU a resumed run ends with the same numbers as an uninterrupted one.

Nothing is silently wrong: a damaged checkpoint is refused (or the previous one used, see
:func:`gnnkit.train.checkpoint.load_checkpoint`), a resume whose settings differ from the
checkpoint's is refused naming each difference, and a non-finite training loss or validation MAE
stops training with :attr:`FitResult.error` saying so (the last good checkpoint is kept).
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import math
import numbers
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from gnnkit.data.files import atomic_write
from gnnkit.train.checkpoint import (
    atomic_save,
    atomic_write_text,
    load_checkpoint,
    previous_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from gnnkit.train.distributed import current_dist

Schedule = Literal["linear", "cosine", "plateau", "constant"]
_SCHEDULES = ("linear", "cosine", "plateau", "constant")
CHECKPOINT_NAME = "checkpoint.pt"
BEST_MODEL_NAME = "best_model.pt"
LOG_NAME = "log.csv"
CURVE_NAME = "learning_curve.png"
# Every file fit writes under out_dir (a recipe adds its own, e.g. result.json).
OUTPUTS = (CHECKPOINT_NAME, previous_checkpoint(CHECKPOINT_NAME).name, BEST_MODEL_NAME, LOG_NAME, CURVE_NAME)
# TrainConfig fields that do not change what is trained (so a resume may change them).
_NOT_RUN_SETTINGS = ("device", "out_dir", "resume", "progress", "log_epochs", "stop_after_epoch", "run_settings",
                     "best_model_info", "flush_denormal")


class Targets(Protocol):
    """How the loop turns a batch into training targets and predictions into physical values
    (e.g. :class:`gnnkit.data.TargetNormalizer`)."""

    def encode(self, batch: Any) -> Tensor:
        """Training targets ``[B, T]`` (float32) the model output is compared with."""
        ...

    def decode(self, pred: Tensor, batch: Any) -> Tensor:
        """Model output ``[B, T]`` -> predictions in physical units ``[B, T]``."""
        ...

    def truth(self, batch: Any) -> Tensor:
        """True values in physical units ``[B, T]``."""
        ...


class IdentityTargets:
    """Trains on ``batch.y`` as it is (no normalisation)."""

    def encode(self, batch: Any) -> Tensor:
        return batch.y.float()

    def decode(self, pred: Tensor, batch: Any) -> Tensor:
        return pred.double()

    def truth(self, batch: Any) -> Tensor:
        return batch.y.double()


def _stderr_is_terminal() -> bool:
    """Whether progress bars would reach a person: stderr is a terminal, not a file or a pipe."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


@dataclass
class TrainConfig:
    """Settings of :func:`fit`.

    Args:
        epochs: number of passes over the training loader.
        lr: initial learning rate (Adam).
        weight_decay: Adam weight decay.
        schedule: ``"linear"`` (per step, from ``lr`` to ``lr * final_lr_factor``, as in Gilmer
            et al.), ``"cosine"`` (per step, same end point), ``"plateau"`` (ReduceLROnPlateau on
            the validation score, as PyG's QM9 example) or ``"constant"``.
        final_lr_factor: end of the linear/cosine schedule relative to ``lr``.
        decay_start: fraction of the steps run at ``lr`` before the linear/cosine decay begins
            (Gilmer et al.: "a linear learning rate decay that began between 10% and 90% of the
            way through training"); 0 decays from the first step.
        plateau_factor, plateau_patience, min_lr: ReduceLROnPlateau settings.
        grad_clip: clip the gradient norm to this (``> 0``; ``None``: no clipping).
        amp: bf16 autocast on CUDA (ignored on CPU).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA if available). Under DDP
            with CUDA each process uses ``cuda:LOCAL_RANK``.
        seed: seeds Python, NumPy and torch before the model is trained.
        out_dir: where checkpoints, the CSV log and the PNG go (``None``: nothing written).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists (else from the previous
            checkpoint kept beside it; neither: start afresh). Refused if the checkpoint was
            written with other settings (every field here but device, out_dir, resume,
            progress, log_epochs and stop_after_epoch; plus ``run_settings`` and the DDP world size).
        progress: tqdm progress bar (main process only); ``None``: only when stderr is a
            terminal, so that a log redirected to a file gets no carriage-return updates.
        log_epochs: print one line per epoch (main process only).
        stop_after_epoch: stop after this epoch as if the run were killed (testing resume).
        target_names: names of the ``T`` targets, for the log.
        score_scale: per-target divisor for the selection score (e.g. chemical accuracy); the
            score is the mean over targets of ``MAE / scale``.
        run_settings: the caller's settings that change the run but are not fields here (data
            subset, model options, batch size, ...): recorded in the checkpoint and checked on
            resume. JSON-like values.
        best_model_info: what ``best_model.pt`` carries beside the weights and the epoch, under
            the key ``"predictor"``: tensors and plain containers only, so that the file loads with
            ``torch.load(..., weights_only=True)`` (see :func:`gnnkit.predict.predictor_card`, which
            :func:`gnnkit.predict.load_predictor` reads back). ``None``: weights and epoch only.
        time_budget: seconds of training wall-clock (the training batches and steps; evaluation
            excluded; summed over resumed sessions) after which the run ends: the epoch in
            progress stops at the first batch boundary past it, is evaluated and logged, and the
            run is complete (``epochs`` is then only an upper bound). The linear and cosine
            schedules then decay over the budget's time instead of the steps (``decay_start`` a
            fraction of it), so that the learning rate reaches its end when the time does.
            ``None``: ``epochs`` alone ends the run.
        flush_denormal: on CPU, train and evaluate with subnormal floats flushed to zero (see
            :func:`flush_denormal`). Without it a model whose gates saturate (the MPNN's GRU on
            QM9) slowed 4x over a 6-epoch run. Changes values only below 1.2e-38 in magnitude;
            not checked on resume (like ``device``).
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Schedule = "linear"
    final_lr_factor: float = 0.05
    decay_start: float = 0.0
    plateau_factor: float = 0.7
    plateau_patience: int = 5
    min_lr: float = 1e-5
    grad_clip: float | None = None
    amp: bool = False
    device: str = "auto"
    seed: int = 0
    out_dir: str | None = None
    resume: bool = False
    progress: bool | None = None
    log_epochs: bool = True
    stop_after_epoch: int | None = None
    target_names: Sequence[str] | None = None
    score_scale: Sequence[float] | None = None
    run_settings: dict[str, Any] | None = None
    best_model_info: dict[str, Any] | None = None
    time_budget: float | None = None
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"grad_clip must be a finite number > 0 or None (no clipping), got {self.grad_clip}")
        if not 0 < self.final_lr_factor <= 1:
            raise ValueError(f"final_lr_factor must be in (0, 1], got {self.final_lr_factor}")
        if not 0 <= self.decay_start < 1:
            raise ValueError(f"decay_start must be in [0, 1), got {self.decay_start}")
        if self.stop_after_epoch is not None and self.stop_after_epoch < 1:
            raise ValueError(f"stop_after_epoch must be >= 1 or None, got {self.stop_after_epoch}")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ValueError(f"time_budget must be a finite number of seconds > 0 or None, got {self.time_budget}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}")
        if self.resume and self.out_dir is None:
            raise ValueError("resume=True needs out_dir (where the checkpoint is)")


@dataclass
class FitResult:
    """What :func:`fit` returns. MAEs are per target, in physical units, at the best epoch.

    ``interrupted`` is true when training stopped before ``epochs``; ``error`` then says why if
    it was not a requested stop (e.g. a non-finite loss: the MAEs are those of the best epoch
    before it, and should not be reported as the run's result).

    ``seconds`` is the wall-clock of the epochs, evaluation and checkpoints included;
    ``train_seconds`` the training part of it alone (what ``time_budget`` counts, the last
    ``train_seconds`` of the log). Both are summed over resumed sessions.
    """

    best_epoch: int
    val_mae: list[float]
    test_mae: list[float] | None
    epochs_completed: int
    seconds: float
    train_molecules_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None
    train_seconds: float = 0.0


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; under DDP with CUDA, ``cuda:LOCAL_RANK``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        info = current_dist()
        if info.distributed and dev.index is None:
            dev = torch.device("cuda", info.local_rank)
    return dev


def denormals_flushed() -> bool:
    """Whether this thread's CPU flushes subnormal float32 values to zero (``torch.set_flush_denormal``)."""
    tiny = torch.finfo(torch.float32).tiny
    return bool((torch.full((1,), tiny) * 0.5).item() == 0.0)


@contextmanager
def flush_denormal(enabled: bool = True) -> Iterator[None]:
    """Runs the block with subnormal floats flushed to zero on the CPU (``torch.set_flush_denormal``:
    x86 FTZ + DAZ), then restores the previous mode.

    Why: when activations saturate, gradients underflow into the subnormal range (below
    ``torch.finfo(torch.float32).tiny`` = 1.2e-38). In the MPNN on QM9, messages of magnitude
    ~1e3 drive GRU gate pre-activations below -87, where ``sigmoid`` and its derivative are
    subnormal; 30-40 % of the gradient reaching the messages became subnormal after a few epochs,
    and the node-level product's backward spread them over the ``N x K x d`` gradient of the
    outer-product aggregation. Arithmetic on subnormals runs in microcode on many x86 CPUs: the
    quick QM9 run slowed from ~360 to ~90 molecules/s. Flushing changes only values smaller than
    1.2e-38, which no float32 sum of normal-sized terms can see, and is deterministic.

    The mode is per thread: it is set on the calling thread (where the CPU autograd engine runs the
    backward too) and on each thread of torch's OpenMP intra-op pool (which would otherwise keep
    the mode it had when it started); with another threading backend, on the calling thread and the
    threads started afterwards only.
    """
    if not enabled:
        yield
        return
    before = denormals_flushed()
    _set_flush_denormal_everywhere(True)
    try:
        yield
    finally:
        _set_flush_denormal_everywhere(before)


def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's intra-op pool runs on (libgomp, or LLVM's libomp, which exports
    the same entry point), if it is loaded in this process."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/lib" in line and ("libgomp" in line or "libomp" in line)}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            if hasattr(lib, "GOMP_parallel"):
                return lib
        except OSError:
            continue
    return None


_TEAM_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _set_flush_denormal_everywhere(on: bool) -> None:
    torch.set_flush_denormal(on)
    lib = _openmp_runtime()
    if lib is None or torch.get_num_threads() < 2:
        return
    # One OpenMP parallel region of torch's thread count: each member of the team (the pool's
    # threads and this one) sets its own mode. ctypes releases the GIL around the call and the
    # callback takes it, so the members run it one after another.
    callback = _TEAM_CALLBACK(lambda _: torch.set_flush_denormal(on))
    lib.GOMP_parallel.argtypes = [_TEAM_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    lib.GOMP_parallel.restype = None
    lib.GOMP_parallel(callback, None, torch.get_num_threads(), 0)


def _all_reduce(t: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def model_input(model: nn.Module, batch: Any) -> Any:
    """What ``model`` is called with: for a gnnkit graph model (one with ``prepare``) the batch's
    validated :class:`gnnkit.nn.Graph`, built here, outside the model's forward, so that the
    forward and backward pass read nothing on the host; the batch itself for any other model."""
    prepare = getattr(model, "prepare", None)
    return prepare(batch) if callable(prepare) else batch


def train_step(
    net: nn.Module, model: nn.Module, batch: Any, targets: Targets, opt: torch.optim.Optimizer, device: torch.device,
    amp: bool = False, grad_clip: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimisation step as :func:`fit` takes it: the model's input built outside the forward
    (:func:`model_input`), the forward under bf16 autocast when ``amp`` on CUDA, MSE against
    ``targets.encode(batch)`` in float32, backward, gradient-norm clipping at ``grad_clip``, the
    optimizer step. ``net`` is what is called (``model`` itself, or its DDP or compiled wrapper);
    ``model`` owns the parameters. Returns the loss (not synchronised) and the encoded targets.

    Shapes:
        ``net(...)``: ``[num_graphs, T]`` (or anything of ``goal``'s size) -> loss ``[]``, goal ``[num_graphs, T]``.
    """
    goal = targets.encode(batch)
    with _autocast(device, amp):
        out = net(model_input(model, batch))
    loss = torch.nn.functional.mse_loss(out.float().reshape(goal.shape), goal)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss, goal


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, targets: Targets, device: torch.device, amp: bool = False) -> Tensor:
    """MAE per target in physical units over ``loader`` (summed over DDP ranks).

    Shapes:
        -> ``[T]`` float64.
    """
    was_training = model.training
    model.eval()
    abs_err: Tensor | None = None
    count = torch.zeros(1, dtype=torch.float64, device=device)
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        with _autocast(device, amp):
            out = model(model_input(model, batch))
        truth = targets.truth(batch)
        err = (targets.decode(out.float().reshape(truth.shape), batch) - truth).abs().sum(0)
        abs_err = err if abs_err is None else abs_err + err
        count += truth.size(0)
    model.train(was_training)
    if abs_err is None:
        raise ValueError("evaluation loader is empty")
    totals = _all_reduce(torch.cat([abs_err.to(torch.float64), count]))
    return (totals[:-1] / totals[-1]).cpu()


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig, total_steps: int, clock: Callable[[], float] | None = None):
    """The learning-rate schedule; with ``clock`` (training seconds so far) and
    ``config.time_budget`` the linear and cosine decays follow the time instead of the steps."""
    f = config.final_lr_factor
    budget = config.time_budget if clock is not None and config.time_budget is not None else None
    total = budget if budget is not None else float(total_steps)
    start = config.decay_start * total

    def progress(step: int) -> float:
        """How far the decay has gone, 0 before ``decay_start`` and 1 at the last step (or second)."""
        now = clock() if budget is not None else step  # type: ignore[misc]
        return min(max(now - start, 0.0) / max(total - start, 1e-9 if budget is not None else 1.0), 1.0)

    if config.schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - (1.0 - f) * progress(s))
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * progress(s))))
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def write_log_csv(history: list[dict[str, float]], path: str | Path) -> None:
    """Writes the per-epoch history as CSV (atomically)."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(buf.getvalue(), path)


def plot_learning_curve(history: list[dict[str, float]], path: str | Path, title: str = "") -> None:
    """Train loss and validation score per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [row["train_loss"] for row in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss (MSE, normalised)", yscale="log")
    ax2.plot(epochs, [row["val_score"] for row in history], marker="o", color="tab:orange")
    ax2.set(xlabel="epoch", ylabel="validation MAE / scale", yscale="log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"), "wb")
    finally:
        plt.close(fig)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    test_loader: Iterable | None = None,
    targets: Targets | None = None,
    config: TrainConfig | None = None,
) -> FitResult:
    """Trains ``model`` and returns validation/test MAE at the best validation epoch.

    Args:
        model: any module with ``model(batch) -> [num_graphs, T]``.
        train_loader: training batches; if its sampler has ``set_epoch`` (see
            :func:`gnnkit.train.make_loader`) it is called every epoch.
        val_loader: validation batches (select the best epoch on them).
        test_loader: test batches, evaluated whenever validation improves.
        targets: turns batches into training targets and outputs into physical values;
            default :class:`IdentityTargets`.
        config: :class:`TrainConfig`.

    On CPU the whole run (training and evaluation) flushes subnormal floats to zero unless
    ``config.flush_denormal`` is off (see :func:`flush_denormal`); the previous mode is restored.
    """
    config = config or TrainConfig()
    on_cpu = resolve_device(config.device).type == "cpu"
    with flush_denormal(config.flush_denormal and on_cpu):
        return _fit(model, train_loader, val_loader, test_loader, targets, config)


def _fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    test_loader: Iterable | None,
    targets: Targets | None,
    config: TrainConfig,
) -> FitResult:
    targets = targets or IdentityTargets()
    info = current_dist()
    device = resolve_device(config.device)
    out_dir = Path(config.out_dir) if config.out_dir is not None else None
    seed_everything(config.seed)
    model = model.to(device)
    if isinstance(targets, nn.Module):
        targets = targets.to(device)
    settings = _run_settings(config, info.world_size)
    if out_dir is not None and info.is_main:
        remove_stale_temporaries(out_dir)  # left by a writer killed mid-write
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    # Training seconds so far (the time budget's clock): finished epochs plus the one in progress.
    clock_state = {"done": 0.0, "since": None}

    def clock() -> float:
        since = clock_state["since"]
        return clock_state["done"] + (time.perf_counter() - since if since is not None else 0.0)

    sched = _scheduler(opt, config, max(config.epochs * steps_per_epoch, 1), clock)
    per_step = config.schedule != "plateau"

    start_epoch, best_score, best_epoch = 1, math.inf, 0
    best_val: list[float] = []
    best_test: list[float] | None = None
    history: list[dict[str, float]] = []
    elapsed, mol_seconds, mols = 0.0, 0.0, 0.0
    ckpt_path = out_dir / CHECKPOINT_NAME if out_dir is not None else None
    loaded = load_checkpoint(ckpt_path) if config.resume and ckpt_path is not None else None
    if loaded is not None:
        ck, ck_from = loaded
        _check_resume_settings(ck, settings, ck_from)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, best_score, best_epoch = ck["epoch"] + 1, ck["best_score"], ck["best_epoch"]
        best_val, best_test, history = ck["best_val"], ck["best_test"], ck["history"]
        elapsed, mol_seconds, mols = ck["elapsed"], ck["mol_seconds"], ck["mols"]
        set_rng_state(ck["rng"])
        _warn_thread_mismatch(ck, ck_from, info.is_main)
    clock_state["done"] = mol_seconds
    budget = config.time_budget
    if budget is not None and info.distributed:
        raise ValueError("time_budget runs in one process (under DDP the ranks' clocks would stop them at different batches)")
    budget_spent = budget is not None and mol_seconds >= budget

    net: nn.Module = model
    if info.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    names = list(config.target_names) if config.target_names is not None else None
    scale = torch.as_tensor(config.score_scale, dtype=torch.float64) if config.score_scale is not None else None
    show = info.is_main and (config.progress if config.progress is not None else _stderr_is_terminal())

    error: str | None = None
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs + 1):
        if budget_spent:  # e.g. resumed after the budget's last epoch: nothing left to train
            epoch -= 1
            break
        t_epoch = time.perf_counter()
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        net.train()
        loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
        batches: Iterable = train_loader
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(train_loader, desc=f"epoch {epoch}/{config.epochs}", leave=False, dynamic_ncols=True)
            batches = bar
        t_train = time.perf_counter()
        clock_state["since"] = t_train
        for step, batch in enumerate(batches):
            batch = batch.to(device, non_blocking=True)
            loss, goal = train_step(net, model, batch, targets, opt, device, config.amp, config.grad_clip)
            if per_step:
                sched.step()
            loss_sum += torch.stack([loss.detach().double() * goal.size(0), torch.tensor(goal.size(0), dtype=torch.float64, device=device)])
            if bar is not None and step % 10 == 0:
                rate = loss_sum[1].item() * info.world_size / max(time.perf_counter() - t_train, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.4f}", mol_s=f"{rate:.0f}")
            if budget is not None and clock() >= budget:
                budget_spent = True
                break
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - t_train
        clock_state["done"], clock_state["since"] = clock_state["done"] + train_seconds, None
        loss_sum = _all_reduce(loss_sum)
        train_loss = (loss_sum[0] / loss_sum[1]).item()
        epoch_mols = loss_sum[1].item()

        val = evaluate(model, val_loader, targets, device, config.amp)
        score = float((val / scale).mean() if scale is not None else val.mean())
        if not (math.isfinite(train_loss) and math.isfinite(score)):
            # Diverged: the weights are garbage from here on. Stop before they replace the last
            # good checkpoint; the log keeps the row that shows it.
            what = f"training loss {train_loss}" if not math.isfinite(train_loss) else f"validation score {score}"
            kept = f"; {ckpt_path} holds epoch {epoch - 1}" if ckpt_path is not None and epoch > 1 else ""
            error = f"non-finite {what} at epoch {epoch}: training stopped (lower the lr or clip gradients){kept}"
            history.append({"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                            **_named("val_mae", val.tolist(), names), "val_score": score})  # fmt: skip
            if info.is_main:
                print(f"error: {error}", file=sys.stderr, flush=True)
                if out_dir is not None:
                    write_log_csv(history, out_dir / LOG_NAME)
            break
        if not per_step:
            sched.step(score)
        improved = score < best_score
        row: dict[str, float] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss}
        row.update(_named("val_mae", val.tolist(), names))
        row["val_score"] = score
        if improved:
            best_score, best_epoch, best_val = score, epoch, val.tolist()
            if test_loader is not None:
                best_test = evaluate(model, test_loader, targets, device, config.amp).tolist()
                row.update(_named("test_mae", best_test, names))
            if out_dir is not None and info.is_main:
                best = {"model": model.state_dict(), "epoch": epoch}
                if config.best_model_info is not None:
                    best["predictor"] = config.best_model_info
                atomic_save(best, out_dir / BEST_MODEL_NAME)
        elapsed += time.perf_counter() - t_epoch
        mol_seconds += train_seconds
        mols += epoch_mols
        # train_seconds / train_molecules: cumulative, the x axes of an equal-wall-clock comparison.
        row.update({"best_epoch": best_epoch, "epoch_seconds": time.perf_counter() - t_epoch,
                    "train_seconds": mol_seconds, "train_molecules": mols,
                    "train_molecules_per_second": epoch_mols / max(train_seconds, 1e-9)})  # fmt: skip
        history.append(row)
        if config.log_epochs and info.is_main:
            msg = " ".join(f"{k}={v:.5g}" for k, v in row.items() if k.startswith(("val_mae", "test_mae")))
            print(f"epoch {epoch}: train_loss={train_loss:.4f} {msg} ({row['train_molecules_per_second']:.0f} mol/s)", flush=True)
        if out_dir is not None and info.is_main:
            save_checkpoint(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "best_val": best_val,
                 "best_test": best_test, "history": history, "elapsed": elapsed, "mol_seconds": mol_seconds,
                 "mols": mols, "rng": rng_state(), "config": asdict(config), "settings": settings,
                 "threads": torch.get_num_threads()},
                ckpt_path,
            )  # fmt: skip
            write_log_csv(history, out_dir / LOG_NAME)
        if info.distributed:
            dist.barrier()
        if budget_spent or (config.stop_after_epoch is not None and epoch >= config.stop_after_epoch):
            break

    interrupted = (epoch < config.epochs and not budget_spent) or error is not None
    if out_dir is not None and info.is_main and history and not interrupted:
        plot_learning_curve(history, out_dir / CURVE_NAME)
    return FitResult(
        best_epoch=best_epoch, val_mae=best_val, test_mae=best_test, epochs_completed=epoch, seconds=elapsed,
        train_molecules_per_second=mols / max(mol_seconds, 1e-9), history=history, interrupted=interrupted,
        error=error, train_seconds=mol_seconds,
    )  # fmt: skip


def check_resume(config: TrainConfig, pending: Sequence[str] = ()) -> int | None:
    """What :func:`fit` will resume, checked before the caller loads any data.

    Args:
        config: the run's settings.
        pending: fields of ``config`` the caller derives from the data (e.g. ``score_scale`` from
            the training targets), not known yet: not compared here; :func:`fit` compares them.

    Returns:
        the epoch of the checkpoint ``fit`` will continue from, or ``None`` if it will start
        afresh (``resume`` off, or no checkpoint in ``out_dir``).

    Raises:
        ValueError: the checkpoint was written with other settings (each difference named).
        gnnkit.train.checkpoint.DamagedFileError: no good checkpoint to resume (each file named).
    """
    if not config.resume or config.out_dir is None:
        return None
    loaded = load_checkpoint(Path(config.out_dir) / CHECKPOINT_NAME, log=lambda msg: None)
    if loaded is None:
        return None
    ck, path = loaded
    settings = _run_settings(config, current_dist().world_size)
    saved = ck.get("settings") if isinstance(ck, dict) else None
    for name in pending if isinstance(saved, dict) else ():
        settings[name] = saved.get(name, settings.get(name))
    _check_resume_settings(ck, settings, path)
    return int(ck["epoch"])


def _run_settings(config: TrainConfig, world_size: int) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: the caller's ``run_settings``, the fields
    of ``config`` that change the run, and the world size (it changes the global batch)."""
    own = {k: v for k, v in asdict(config).items() if k not in _NOT_RUN_SETTINGS}
    settings = {**(config.run_settings or {}), **own, "world_size": world_size}
    return json.loads(json.dumps(settings, default=str))  # tuples -> lists, as a checkpoint holds them


# What fit's checkpoint holds (see the save at the end of each epoch).
_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "best_score", "best_epoch", "best_val", "best_test",
                    "history", "elapsed", "mol_seconds", "mols", "rng", "config")


def _check_resume_settings(ck: Any, settings: dict[str, Any], path: Path) -> None:
    if not isinstance(ck, dict):
        raise ValueError(f"{path} is not a gnnkit training checkpoint: it holds a {type(ck).__name__}, not the dict "
                         "fit() writes; start the run afresh (--overwrite) or point --out elsewhere")  # fmt: skip
    missing = [k for k in _CHECKPOINT_KEYS if k not in ck]
    if missing and "settings" in ck:
        raise ValueError(f"{path} is not a complete gnnkit training checkpoint: no {', '.join(missing)}; start the run "
                         "afresh (--overwrite) or point --out elsewhere")  # fmt: skip
    saved = ck.get("settings")
    if saved is None:
        raise ValueError(f"{path} records no run settings (written by an older gnnkit), so resuming it cannot be "
                         "checked; start the run afresh")  # fmt: skip
    unset = "<unset>"
    diff = [f"{k} (checkpoint: {saved.get(k, unset)!r}, now: {settings.get(k, unset)!r})"
            for k in sorted(set(saved) | set(settings)) if saved.get(k, unset) != settings.get(k, unset)]  # fmt: skip
    if diff:
        raise ValueError(f"cannot resume {path}: it was written with other settings: {'; '.join(diff)}. Resume with "
                         "the checkpoint's settings, or start a new run in another folder")  # fmt: skip


def _warn_thread_mismatch(ck: dict[str, Any], path: Path, show: bool) -> None:
    """A CPU reduction splits its work by thread, so another thread count changes the rounding of
    every step after the resume: say so (the run goes on; it is not wrong, only not identical)."""
    saved, now = ck.get("threads"), torch.get_num_threads()
    if show and saved is not None and saved != now:
        print(f"warning: {path} was written with {saved} CPU threads, this run uses {now}: the resumed run's numbers "
              f"will differ slightly from an uninterrupted run's (set OMP_NUM_THREADS={saved} or "
              f"torch.set_num_threads({saved}) to continue bit-identically)", file=sys.stderr, flush=True)  # fmt: skip


def _named(prefix: str, values: list[float], names: list[str] | None) -> dict[str, float]:
    if names is None or len(names) != len(values):
        names = [str(i) for i in range(len(values))] if len(values) > 1 else [""]
    return {f"{prefix}_{n}" if n else prefix: v for n, v in zip(names, values)}


def loader_throughput(loader: Iterable, device: str | torch.device = "cpu", max_batches: int | None = None) -> float:
    """Molecules (graphs) per second of iterating ``loader`` and moving batches to ``device``,
    with no model: the rate the data pipeline can feed."""
    device = torch.device(device)
    n, t0 = 0, time.perf_counter()
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = batch.to(device, non_blocking=True)
        n += batch.num_graphs
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / max(time.perf_counter() - t0, 1e-9)


__all__ = [
    "model_input",
    "train_step",
    "OUTPUTS",
    "check_resume",
    "FitResult",
    "IdentityTargets",
    "Targets",
    "TrainConfig",
    "evaluate",
    "fit",
    "loader_throughput",
    "plot_learning_curve",
    "resolve_device",
    "write_log_csv",
]
