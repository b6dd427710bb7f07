"""gnnkit.train: the training loop (device, AMP, DDP, checkpoints, resume, metrics, logs)."""

from gnnkit.train.checkpoint import atomic_save, rng_state, seed_everything, set_rng_state
from gnnkit.train.distributed import DistInfo, ShardSampler, current_dist, init_distributed, make_loader
from gnnkit.train.loop import (
    FitResult,
    IdentityTargets,
    Targets,
    TrainConfig,
    evaluate,
    fit,
    loader_throughput,
    plot_learning_curve,
    resolve_device,
    write_log_csv,
)
from gnnkit.train.node import NodeResult, train_node_classifier

__all__ = [
    "fit",
    "evaluate",
    "TrainConfig",
    "FitResult",
    "Targets",
    "IdentityTargets",
    "make_loader",
    "ShardSampler",
    "DistInfo",
    "init_distributed",
    "current_dist",
    "resolve_device",
    "loader_throughput",
    "write_log_csv",
    "plot_learning_curve",
    "atomic_save",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "train_node_classifier",
    "NodeResult",
]
