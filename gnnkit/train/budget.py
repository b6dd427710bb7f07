"""Training under two budgets at once: equal wall-clock and equal epochs, from one run.

:class:`BudgetChunks` cuts an endless stream over a training loader into the "epochs" that
:func:`gnnkit.train.fit` iterates, each ending at an evaluation point of one of two budgets:

* **time**: ``time_evals`` marks at equal fractions of ``seconds`` of training wall-clock
  (evaluation between chunks excluded);
* **epochs**: the end of each of the first ``epochs`` passes over the loader.

There is exactly one chunk per evaluation point (``time_evals + epochs`` in all), in the order
the run reaches them, so the loop's epoch count is known in advance. The run lasts until both
budgets are spent. Because :func:`fit` selects on validation causally (a row's test MAE is
recorded whenever validation improves), the result of each budget is read off the history of the
longer run: the best validation point among those reached within the budget
(:meth:`BudgetChunks.result`). With a schedule that does not look at the evaluation points (constant,
or per-step), that is exactly the result a run stopped at the budget would give.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Budget = Literal["time", "epochs"]


@dataclass
class EvalPoint:
    """Where a chunk ended: which budget's mark it reached, and the cumulative training
    ``seconds``, ``batches`` and ``molecules`` (graphs) seen by then."""

    budget: Budget
    seconds: float
    batches: int
    molecules: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BudgetChunks:
    """A training loader as ``time_evals + epochs`` chunks ending at the evaluation points of a
    time budget and an epoch budget (see the module docstring).

    Batches come from an endless stream over ``loader`` (a new pass whenever one ends;
    ``loader.sampler.set_epoch(pass)`` is called when the sampler has it, so each pass is shuffled
    anew and reproducibly). A chunk ends at the first of its two pending marks:

    * the next time mark ``k * seconds / time_evals``: the chunk stops at the batch boundary
      nearest to it, i.e. when the next batch, at the average batch time so far, would end more
      than half a batch past the mark (so a model taking seconds per batch is not handed an extra
      batch);
    * the end of the next pass, while fewer than ``epochs`` passes are complete.

    Every chunk has at least one batch (so when two marks fall in the same batch, the second
    chunk is one batch long). The time between batches (the optimisation step) counts as
    training time; the evaluation between chunks does not. ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) is called before the clock is read at the end of a chunk, so
    that queued GPU work is charged to training.

    Args:
        loader: the training loader (re-iterable, with ``len``).
        seconds: the time budget (training wall-clock, > 0).
        time_evals: evaluation points of the time budget (>= 1).
        epochs: the epoch budget (passes over ``loader``, >= 1; 0 for a time budget alone, e.g. a
            fixed stretch of training wall-clock in ``time_evals`` chunks).
        synchronize: called before reading the clock at the end of a chunk.

    Attributes:
        points: one :class:`EvalPoint` per finished chunk.
        batches, molecules: totals so far.
    """

    def __init__(
        self,
        loader: Iterable,
        seconds: float,
        time_evals: int,
        epochs: int,
        synchronize: Callable[[], None] | None = None,
    ) -> None:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
        for name, value, least in (("time_evals", time_evals, 1), ("epochs", epochs, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        self.batches_per_pass = len(loader)  # type: ignore[arg-type]
        if self.batches_per_pass < 1:
            raise ValueError("the training loader is empty")
        self.loader, self.seconds, self.time_evals, self.epochs = loader, float(seconds), time_evals, epochs
        self.synchronize = synchronize
        self.points: list[EvalPoint] = []
        self.batches = self.molecules = 0
        self._it: Iterator | None = None
        self._pass = 0
        self._train_seconds = 0.0

    def __len__(self) -> int:
        """Batches per pass. :func:`fit` sizes per-step schedules (linear, cosine) by it, but a
        chunk is not a pass: use a constant or plateau schedule with these chunks."""
        return self.batches_per_pass

    @property
    def passes(self) -> int:
        """Passes over the loader started so far."""
        return self._pass

    @property
    def num_chunks(self) -> int:
        """Chunks in the whole run: the ``epochs`` to give :func:`fit`."""
        return self.time_evals + self.epochs

    def _next(self) -> Any:
        while True:
            if self._it is None:
                self._pass += 1
                sampler = getattr(self.loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self._pass)
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None

    def __iter__(self) -> Iterator[Any]:
        if len(self.points) >= self.num_chunks:
            raise RuntimeError(f"all {self.num_chunks} chunks of this budget have been used")
        time_done = sum(p.budget == "time" for p in self.points)
        epochs_done = sum(p.budget == "epochs" for p in self.points)
        # Cumulative marks, so that overshoots do not add up.
        time_mark = (time_done + 1) * self.seconds / self.time_evals if time_done < self.time_evals else math.inf
        batch_mark = (epochs_done + 1) * self.batches_per_pass if epochs_done < self.epochs else math.inf
        t0, done = time.perf_counter(), self._train_seconds
        first = True
        while True:
            if not first:
                if self.batches >= batch_mark:
                    budget: Budget = "epochs"
                    break
                now = done + time.perf_counter() - t0
                if now + 0.5 * now / self.batches >= time_mark:
                    budget = "time"
                    break
            first = False
            batch = self._next()
            self.molecules += int(getattr(batch, "num_graphs", 1))
            self.batches += 1
            yield batch
        if self.synchronize is not None:
            self.synchronize()
        self._train_seconds = done + time.perf_counter() - t0
        self.points.append(EvalPoint(budget, self._train_seconds, self.batches, self.molecules))

    def result(self, history: Sequence[dict[str, float]], budget: Budget) -> BudgetResult:
        """The best validation point of ``budget`` in the history of the run fed by these chunks.

        ``history`` is :attr:`gnnkit.train.FitResult.history` (one row per chunk, with
        ``val_score``, ``val_mae*`` and, on rows where validation improved, ``test_mae*``). The
        budget's points are those up to and including the one that reached its last mark (or the
        last one evaluated, if the run stopped early); the selected point is the first with the
        lowest finite validation score among them. :func:`fit` saw that point as an improvement,
        so its test MAE is in its row.

        Raises:
            ValueError: ``budget`` is not ``"time"`` or ``"epochs"`` (or is ``"epochs"`` for chunks
                made with ``epochs=0``), or the history has rows for chunks that did not run.
        """
        if budget not in ("time", "epochs"):
            raise ValueError(f"budget must be 'time' or 'epochs', got {budget!r}")
        if budget == "epochs" and self.epochs == 0:
            raise ValueError("these chunks have no epoch budget (epochs=0)")
        n = len(history)
        if n > len(self.points) or n == 0:
            raise ValueError(f"history has {n} rows for {len(self.points)} finished chunks")
        reached = [i for i, p in enumerate(self.points[:n]) if p.budget == budget]
        required = self.time_evals if budget == "time" else self.epochs
        last = reached[-1] if len(reached) == required else n - 1
        best, best_score = None, math.inf
        for i in range(last + 1):
            score = history[i].get("val_score", math.nan)
            if math.isfinite(score) and score < best_score:
                best, best_score = i, score
        val = test = None
        if best is not None:
            row = history[best]
            val = [v for k, v in row.items() if k.startswith("val_mae")]
            test = [v for k, v in row.items() if k.startswith("test_mae")] or None
        point = self.points[last]
        return BudgetResult(best, last, val, test, point.seconds, point.molecules, len(reached) == required)


@dataclass
class BudgetResult:
    """The outcome of one budget, read off a run's history.

    Attributes:
        point: index of the selected evaluation point (best validation score within the budget),
            ``None`` if no point within the budget had a finite score.
        last: index of the last evaluation point within the budget.
        val_mae, test_mae: per target at the selected point (``None`` when there is none, or when
            the run had no test loader).
        seconds, molecules: training time and molecules seen at the end of the budget (its last
            point).
        complete: the run reached the budget's last mark (it did not stop early).
    """

    point: int | None
    last: int
    val_mae: list[float] | None
    test_mae: list[float] | None
    seconds: float
    molecules: int
    complete: bool


__all__ = ["BudgetChunks", "EvalPoint", "BudgetResult", "Budget"]
