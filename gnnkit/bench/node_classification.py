"""Node classification on the Planetoid / Geom-GCN benchmarks: the runner behind
``recipes/node_classification.py`` (and the ``gnnkit node`` command).

Entry points: :func:`run` (one model on one dataset over every split of a protocol, with
:class:`RunConfig`), :func:`plan_all` + :func:`run_all` (every row of the settings file's ``all``
section, ``--resume`` and a process pool), :func:`collect` (tabulate finished rows).

Settings come from ``node_classification.json`` beside this module (taken from the papers'
reference scripts; ``settings[model][splits][dataset]``, with ``*`` rows as fall-backs). What a
model needs beyond the shared training loop (:func:`gnnkit.train.node.train_node_classifier`) is
its row of :data:`PROTOCOLS`: operators built once per dataset (TDGNN's tree, cached on disk),
a helper built once per dataset (NHGCN's homophily split) and the model selection rule.

Run ``i`` of a protocol uses split ``i`` and ``torch.manual_seed(i)``; the public split is run 10
times with seeds 0..9. ``std`` is the population standard deviation over the splits (what TDGNN's
``main.py`` prints). A run writes only under its ``out``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnkit.data.node_classification import NODE_DATASETS, SPLITS, graph_key, load_node_dataset
from gnnkit.models import MODELS as REGISTRY
from gnnkit.models import HomophilySplit, TreeDecomposition, build_model
from gnnkit.nn import tree_edges
from gnnkit.train import resolve_device
from gnnkit.train.checkpoint import atomic_write_text, load_or_build
from gnnkit.train.node import NodeResult, train_node_classifier
from gnnkit.train.outdir import prepare_out_dir

__all__ = [
    "CONFIG", "MODELS", "PROTOCOLS", "NodeProtocol", "RunConfig", "AllPlan", "run", "plan_all", "run_all", "collect",
    "check_result", "markdown_table", "read_config", "check_overrides", "row_settings",
]  # fmt: skip

CONFIG = pathlib.Path(__file__).resolve().parent / "node_classification.json"
RESULT_NAME = "result.json"
ALL_RECORD, ALL_TABLE = "all.json", "node_classification_all.md"  # written by --all under --out
RUNS_PER_PROTOCOL = 10  # every protocol: 10 split files, 10 random splits, or 10 seeds on the public split
# Config keys named after the reference scripts' flags, and the registry's option names for them.
OPTION_NAMES = {"finaldp": "final_dropout", "addself": "add_self_loops", "wd": "weight_decay"}
# Weight-decay keys a model's param_groups() takes (GCN: first layer only; TDGNN: three groups).
DECAY_KEYS = ("weight_decay", "wd1", "wd2", "wd3")


def _tdgnn_operators(data: Data, hp: dict) -> Data:
    """``data`` with TDGNN's tree operator (what :class:`gnnkit.models.TreeDecomposition` adds),
    cached on disk beside the dataset (datasets/**/cache) so that the multi-source BFS runs once
    per graph. The cache is checked on load and rebuilt if damaged; it is written atomically, so
    concurrent ``--all --jobs`` workers never read a half-written file."""
    cfg = TreeDecomposition(hp["levels"], int(hp.get("max_hops", 10)), bool(hp.get("symmetric", False))).config
    key = graph_key(data.edge_index, data.num_nodes, cfg["levels"], cfg["max_hops"], cfg["symmetric"])
    path = pathlib.Path(data.cache_dir) / f"tdgnn-tree-{key}.pt"
    edges = load_or_build(path, lambda: tree_edges(data.edge_index, data.num_nodes, cfg["levels"], cfg["max_hops"], cfg["symmetric"]))
    out = data.clone()
    out.tree_edge_index, out.tree_edge_weight, out.tree_edge_type = edges
    out.tree_config = cfg
    return out


def _homophily_split(data: Data, hp: dict) -> HomophilySplit:
    # nh_variant "reference_code" (the config's default) reproduces two quirks of rockcor/NHGCN's
    # NH estimate; "as_described" is the documented rule.
    return HomophilySplit(data.edge_index, data.num_nodes, int(hp["hops"]), bool(hp["includeself"]), float(hp["threshold"]),
                          variant=hp.get("nh_variant", "reference_code"))  # fmt: skip


def _val_loss_rule(hp: dict, fit: _Split) -> dict[str, Any]:
    return {"select": hp.get("select", "val_loss"), "early_stopping": int(hp.get("early_stopping", 0))}


def _gcn_rule(hp: dict, fit: _Split) -> dict[str, Any]:
    rule = _val_loss_rule(hp, fit)
    rule["early_stopping_start"] = rule["early_stopping"]  # Kipf: the window applies from its own length on
    return rule


def _nhgcn_rule(hp: dict, fit: _Split) -> dict[str, Any]:
    def reestimate(logits: Tensor) -> None:  # NHGCN: re-split the nodes whenever val accuracy improves
        fit.state["graph"] = fit.model.with_split(fit.state["graph"], fit.helper(logits, fit.y, fit.train_mask))

    return {**_val_loss_rule(hp, fit), "select": "val_acc", "patience": int(hp["patience"]), "on_improve": reestimate}


@dataclass
class _Split:
    """What a selection rule may reach while one split trains: the model, its prepared graph
    (``state["graph"]``, replaceable), the per-dataset helper, the labels and the training mask."""

    model: torch.nn.Module
    state: dict[str, Any]
    helper: Any
    y: Tensor
    train_mask: Tensor


@dataclass(frozen=True)
class NodeProtocol:
    """How one model is trained on a node benchmark, beyond the shared loop.

    Attributes:
        optional: settings the model reads that the settings file may leave out (``--set`` accepts them).
        operators: ``(data, settings) -> data``, once per dataset (TDGNN: the tree operator, cached on disk).
        helper: ``(data on the device, settings) -> object``, once per dataset (NHGCN: the homophily split).
        rule: ``(settings, split) -> keyword arguments`` of :func:`train_node_classifier` (selection,
            early stopping, callbacks).
        width: hidden widths per layer, for the cost estimate that schedules ``--all`` (NHGCN: two channels).
    """

    optional: tuple[str, ...] = ("graph",)
    operators: Callable[[Data, dict], Data] | None = None
    helper: Callable[[Data, dict], Any] | None = None
    rule: Callable[[dict, _Split], dict[str, Any]] = _val_loss_rule
    width: int = 1


_TDGNN = NodeProtocol(("graph", "max_hops", "symmetric", "wd3"), operators=_tdgnn_operators)
PROTOCOLS: dict[str, NodeProtocol] = {
    "gcn": NodeProtocol(rule=_gcn_rule),
    "tdgnn-s": _TDGNN,
    "tdgnn-w": _TDGNN,
    "nhgcn": NodeProtocol(("graph", "nh_variant", "ego"), helper=_homophily_split, rule=_nhgcn_rule, width=2),
}
MODELS = tuple(PROTOCOLS)


@dataclass
class RunConfig:
    model: str
    dataset: str
    splits: str
    data_root: str | None = None
    out: str | None = None
    num_splits: int | None = None  # run only the first n splits (smoke tests)
    epochs: int | None = None  # override the configured epochs (smoke tests)
    device: str = "cpu"
    config_file: str = str(CONFIG)
    hparams: dict[str, Any] = field(default_factory=dict)
    resume: bool = False  # reuse OUT/result.json if it was written with these settings
    overwrite: bool = False  # replace OUT/result.json

    def __post_init__(self) -> None:
        """Checks every value, so that a bad one fails before any data is loaded."""
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {MODELS}, got {self.model!r}")
        if self.dataset not in NODE_DATASETS:
            raise ValueError(f"--dataset must be one of {NODE_DATASETS}, got {self.dataset!r}")
        if self.splits not in SPLITS:
            raise ValueError(f"--splits must be one of {SPLITS}, got {self.splits!r}")
        if self.splits == "public" and self.dataset not in ("cora", "citeseer"):
            raise ValueError(f"--splits public exists only for cora and citeseer, not {self.dataset!r}")
        for name, most in (("epochs", None), ("num_splits", RUNS_PER_PROTOCOL)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most is not None and value > most):
                limit = f"in 1..{most} (runs per protocol)" if most is not None else "an integer >= 1"
                raise ValueError(f"--{name.replace('_', '-')} must be {limit}, got {value!r}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        try:
            self.device = str(resolve_device(self.device))
        except RuntimeError as e:  # torch.device("gpu")
            raise ValueError(f"--device {self.device!r}: {e}") from e


def lookup(config: dict, model: str, splits: str, dataset: str) -> dict[str, Any]:
    """settings[model][splits][dataset] -> [splits]['*'] -> ['*'][dataset] -> ['*']['*']."""
    table = config["settings"][model]
    for a, b in ((splits, dataset), (splits, "*"), ("*", dataset), ("*", "*")):
        if b in table.get(a, {}):
            return {**table.get("_all", {}), **table[a][b]}
    raise KeyError(f"no settings for {model} / {splits} / {dataset}")


def paper_number(config: dict, model: str, splits: str, dataset: str, key: str = "paper") -> float | None:
    return config.get(key, {}).get(model, {}).get(splits, {}).get(dataset)


class Runner:
    """Builds what a model reads once per dataset, then trains one split at a time: every model
    comes from the registry (:func:`gnnkit.models.build_model`) and is called on the graph its
    ``prepare`` validates and precomputes once per split."""

    def __init__(self, model: str, data, hp: dict, device: str, epochs: int | None) -> None:
        self.name, self.hp, self.device = model, hp, device
        self.epochs = int(epochs or hp["epochs"])
        options = REGISTRY[model].options()
        self.options = {OPTION_NAMES.get(k, k): v for k, v in hp.items() if OPTION_NAMES.get(k, k) in options}
        self.decay = {OPTION_NAMES.get(k, k): v for k, v in hp.items() if OPTION_NAMES.get(k, k) in DECAY_KEYS}
        self.protocol = PROTOCOLS[model]
        data = data.clone()
        data.x = data.x.to_sparse()  # bag-of-words features: sparse products, sparse dropout
        if self.protocol.operators is not None:
            data = self.protocol.operators(data, hp)
        self.data = data.to(device)
        self.num_features, self.num_classes = data.num_features, data.num_classes
        self.helper = self.protocol.helper(self.data, hp) if self.protocol.helper is not None else None

    def run_split(self, i: int, seed: int) -> NodeResult:
        torch.manual_seed(seed)
        d, hp = self.data, self.hp
        masks = [m[:, i] for m in (d.train_mask, d.val_mask, d.test_mask)]
        model = build_model(self.name, self.num_features, self.num_classes, **self.options).to(self.device)
        optimizer = torch.optim.Adam(model.param_groups(**self.decay), lr=hp["lr"])
        state = {"graph": model.prepare(d)}  # validated, normalised, operators built: once for all epochs
        rule = self.protocol.rule(hp, _Split(model, state, self.helper, d.y, masks[0]))
        return train_node_classifier(model, lambda: model(state["graph"]), optimizer, d.y, *masks, self.epochs, **rule)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The settings file (``--config``), with errors that name it."""
    path = pathlib.Path(path)
    try:
        config = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"--config {path}: cannot read it ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"--config {path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or not isinstance(config.get("settings"), dict):
        raise ValueError(f"--config {path}: expected a JSON object with a 'settings' section")
    return config


def setting_names(config: dict, model: str) -> tuple[str, ...]:
    """The names ``--set`` accepts for ``model``: every setting the config gives it anywhere,
    plus the optional ones the model reads (:attr:`NodeProtocol.optional`)."""
    names = set(PROTOCOLS[model].optional) if model in PROTOCOLS else set()
    for protocol, table in config["settings"].get(model, {}).items():
        rows = [table] if protocol == "_all" else list(table.values())
        names.update(k for row in rows for k in row if not k.startswith("source"))
    return tuple(sorted(names))


def check_overrides(config: dict, models: list[str] | tuple[str, ...], hparams: dict[str, Any]) -> None:
    """``--set`` names must be settings of at least one of the models run (a typo is an error)."""
    valid = sorted({n for m in models for n in setting_names(config, m)})
    unknown = sorted(k for k in hparams if k not in valid)
    if unknown:
        raise ValueError(f"unknown --set {', '.join(unknown)} for {', '.join(dict.fromkeys(models))}; valid names: {', '.join(valid)}")


def row_settings(config: dict, cfg: RunConfig) -> dict[str, Any]:
    """The settings a row runs with: the config's, then ``--set``, then ``--epochs`` (so that
    ``hparams`` in result.json says what was run)."""
    try:
        hp = {**lookup(config, cfg.model, cfg.splits, cfg.dataset), **cfg.hparams}
    except KeyError as e:
        raise ValueError(f"--config {cfg.config_file}: {e.args[0]}") from e
    if cfg.epochs is not None:
        hp["epochs"] = cfg.epochs
    epochs = hp.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r} for {cfg.model} / {cfg.splits} / {cfg.dataset}")
    return hp


def run(cfg: RunConfig) -> dict[str, Any]:
    config = read_config(cfg.config_file)
    check_overrides(config, [cfg.model], cfg.hparams)
    hp = row_settings(config, cfg)
    out = pathlib.Path(cfg.out) if cfg.out else None
    if out is not None:
        # before any data is loaded: never replace another run's result unless told to
        prepare_out_dir(out, cfg.resume, cfg.overwrite, outputs=(RESULT_NAME,))
        if cfg.resume:
            prior, diff = _prior_result(out / RESULT_NAME, cfg, hp)
            if diff:
                raise ValueError(f"--resume: {out / RESULT_NAME} was written with other settings: {'; '.join(diff)}. "
                                 "Run with its settings, or --overwrite it, or use another --out")  # fmt: skip
            if prior is not None:
                print(f"{cfg.model} {cfg.dataset} {cfg.splits}: reusing {out / RESULT_NAME}", flush=True)
                return prior
    start = time.time()
    data = load_node_dataset(cfg.dataset, cfg.splits, cfg.data_root, graph=hp.get("graph", "as_loaded"))
    runner = Runner(cfg.model, data, hp, cfg.device, cfg.epochs)
    n_runs = RUNS_PER_PROTOCOL if cfg.splits == "public" else data.train_mask.size(1)
    if cfg.num_splits is not None:
        if cfg.num_splits > n_runs:
            raise ValueError(f"--num-splits {cfg.num_splits}: {cfg.dataset} {cfg.splits} has only {n_runs} splits")
        n_runs = cfg.num_splits
    accs, split_seconds = [], []
    for i in range(n_runs):
        t = time.time()
        res = runner.run_split(0 if cfg.splits == "public" else i, seed=i)
        split_seconds.append(time.time() - t)
        accs.append(100.0 * res.test_acc)
        print(
            f"  split {i}: test {accs[-1]:.2f}  val {100 * res.val_acc:.2f}  epoch {res.epoch}/{res.epochs_run}"
            f"  ({split_seconds[-1]:.1f} s)",
            flush=True,
        )
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
    result = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "splits": cfg.splits,
        "accs": accs,
        "mean": mean,
        "std": std,
        "paper": paper_number(config, cfg.model, cfg.splits, cfg.dataset),
        "seconds": time.time() - start,
        "reference_run": paper_number(config, cfg.model, cfg.splits, cfg.dataset, "reference_run"),
        "split_seconds": split_seconds,
        "hparams": hp,
        "num_splits": cfg.num_splits,
        "epochs": cfg.epochs,
    }
    paper = f"{result['paper']:.2f}" if result["paper"] is not None else "n/a"
    print(f"{cfg.model} {cfg.dataset} {cfg.splits}: {mean:.2f} ± {std:.2f} (paper: {paper})  [{result['seconds']:.0f} s]", flush=True)
    if out is not None:
        atomic_write_text(json.dumps(result, indent=2), out / RESULT_NAME)
    return result


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | dataset | splits | runs | ours (mean ± std) | paper | official code on these files | Δ vs paper | time (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        paper = f"{r['paper']:.2f}" if r["paper"] is not None else "n/a"
        ref = f"{r['reference_run']:.2f}" if r.get("reference_run") is not None else "n/a"
        delta = f"{r['mean'] - r['paper']:+.2f}" if r["paper"] is not None else ""
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['splits']} | {len(r['accs'])} | {r['mean']:.2f} ± {r['std']:.2f} | {paper} | {ref} | {delta} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"



def _settings(hp: dict[str, Any]) -> dict[str, Any]:
    """The settings that change a run: everything but the config's ``source*`` notes."""
    return {k: v for k, v in hp.items() if not k.startswith("source")}


def check_result(result: Any, path: pathlib.Path) -> dict[str, Any]:
    """``result`` if it is a result.json this recipe wrote, else a ValueError naming ``path``."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not isinstance(result, dict):
        raise ValueError(f"{path}: not a result (holds {json.dumps(result)[:40]})")
    problems = [k for k in ("model", "dataset", "splits") if not isinstance(result.get(k), str)]
    accs = result.get("accs")
    if not isinstance(accs, list) or not accs or not all(number(a) for a in accs):
        problems.append("accs")
    problems += [k for k in ("mean", "std", "seconds") if not number(result.get(k))]
    problems += [k for k in ("paper", "reference_run") if result.get(k) is not None and not number(result[k])]
    if not isinstance(result.get("hparams"), dict):
        problems.append("hparams")
    if not problems and (result["model"] not in MODELS or result["dataset"] not in NODE_DATASETS or result["splits"] not in SPLITS):
        problems.append("model/dataset/splits")
    if problems:
        raise ValueError(f"{path}: not a valid result (missing or bad {', '.join(problems)})")
    return result


def _read_result(path: pathlib.Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from e
    try:
        return check_result(json.loads(text), path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _prior_result(path: pathlib.Path, cfg: RunConfig, hp: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """A finished result of this row for ``--resume``, and how its settings differ from
    ``cfg``/``hp`` (each ``"name (saved: ..., now: ...)"``). ``(None, [])`` if there is none or it
    is unreadable (the row is rerun, said on stdout)."""
    if not path.exists():
        return None, []
    try:
        result = _read_result(path)
    except ValueError as e:
        print(f"{e}; rerunning the row", flush=True)
        return None, []
    unset = "<unset>"
    now = {"model": cfg.model, "dataset": cfg.dataset, "splits": cfg.splits, "num_splits": cfg.num_splits,
           "epochs": cfg.epochs, **{f"hparams.{k}": v for k, v in _settings(hp).items()}}  # fmt: skip
    then = {k: result.get(k, unset) for k in ("model", "dataset", "splits", "num_splits", "epochs")}
    then.update({f"hparams.{k}": v for k, v in _settings(result["hparams"]).items()})
    diff = [f"{k} (saved: {then.get(k, unset)!r}, now: {now.get(k, unset)!r})"
            for k in sorted(set(now) | set(then)) if then.get(k, unset) != now.get(k, unset)]  # fmt: skip
    return (None, diff) if diff else (result, [])


def _order(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {m: i for i, m in enumerate(MODELS)}
    return sorted(results, key=lambda r: (order[r["model"]], r["splits"], NODE_DATASETS.index(r["dataset"])))


def collect(folder: pathlib.Path, write_table: str | None = None) -> list[dict[str, Any]]:
    """``--collect``: tabulates ``folder/*/result.json`` (each checked, errors name the file),
    prints the table and, with ``write_table``, writes it there (with ``folder/all.json``'s
    account of the ``--all`` run when that describes the same rows)."""
    if not folder.is_dir():
        raise ValueError(f"--collect {folder}: no such folder")
    paths = sorted(folder.glob(f"*/{RESULT_NAME}"))
    if not paths:
        raise ValueError(f"--collect {folder}: no {folder}/*/{RESULT_NAME} to tabulate")
    results = _order([_read_result(f) for f in paths])
    text = markdown_table(results)
    if write_table:
        record = None
        if (folder / ALL_RECORD).exists():
            try:
                record = json.loads((folder / ALL_RECORD).read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{folder / ALL_RECORD}: not valid JSON ({e})") from e
        rows = sorted(f"{r['model']}-{r['dataset']}-{r['splits']}" for r in results)
        keys = ("command", "device", "cpu", "cores", "wall_seconds", "rows_run", "rows_reused", "load_start", "load_end")
        if isinstance(record, dict) and all(k in record for k in keys) and sorted(record.get("rows", [])) == rows:
            text = all_report(record, results)
        else:
            text = f"# Node classification\n\nCollected from `{folder}/*/{RESULT_NAME}` ({len(results)} rows).\n\n{text}"
        atomic_write_text(text, write_table)
        print(f"wrote {write_table}", flush=True)
    print(markdown_table(results))
    return results


def all_report(record: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The markdown of an ``--all`` run: its command and timing (``record``, as in all.json), then the table."""
    row_seconds = sum(r["seconds"] for r in results)
    reused = record["rows_reused"]
    return (
        f"# Node classification, all models\n\n"
        f"Command: `{record['command']}`, device {record['device']} ({record['cpu']}, {record['cores']} cores), "
        f"wall time {record['wall_seconds']:.0f} s for {record['rows_run']} rows run here"
        f"{f' ({reused} rows reused from an earlier run under --out)' if reused else ''}; "
        f"the rows' own times sum to {row_seconds:.0f} s. Load average (1 min) {record['load_start']:.1f} at the start, "
        f"{record['load_end']:.1f} at the end.\n\n{markdown_table(results)}"
    )


def _cost(model: str, data, hp: dict[str, Any], epochs: int | None) -> float:
    """Rough cost of one row (for scheduling the longest rows first): epochs x splits x work per epoch."""
    runs = 10 if data.train_mask.size(1) == 1 else data.train_mask.size(1)
    width = hp.get("hidden", 16) * PROTOCOLS[model].width
    per_epoch = data.x.count_nonzero().item() * width + data.edge_index.size(1) * width
    if PROTOCOLS[model].operators is _tdgnn_operators:  # the tree operator's products
        per_epoch += 2e5 * len(hp["levels"]) * data.num_classes
    return float(epochs or hp["epochs"]) * runs * per_epoch


def _run_row(cfg: RunConfig, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return run(cfg)


@dataclass
class AllPlan:
    """What ``--all`` will do, decided before any training: rows to reuse and rows to run."""

    config: dict[str, Any]
    out: pathlib.Path
    common: dict[str, Any]
    reused: dict[tuple[str, str, str], dict[str, Any]]
    to_run: list[tuple[tuple[str, str, str], RunConfig, dict[str, Any]]]


def plan_all(out: str | os.PathLike, resume: bool, overwrite: bool, common: dict[str, Any]) -> AllPlan:
    """Checks every row of the config's ``all`` section (settings, --set names, --out) and
    decides, before anything is trained, which finished rows ``--resume`` reuses. ``common``:
    the :class:`RunConfig` fields every row shares (``config_file``, ``hparams``, ``epochs``, ...)."""
    config_file = common.get("config_file", str(CONFIG))
    config = read_config(config_file)
    if not isinstance(config.get("all"), dict):
        raise ValueError(f"--config {config_file}: no 'all' section")
    out = pathlib.Path(out)
    rows = [(m, d, s) for m, protocols in config["all"].items() for s, datasets in protocols.items() for d in datasets]
    check_overrides(config, [m for m, _, _ in rows], common["hparams"])
    # each row takes the --set names its model has (and records only those); rows run with
    # overwrite: the policy for --out is applied once, here
    cfgs = {}
    for key in rows:
        names = setting_names(config, key[0])
        own = {k: v for k, v in common["hparams"].items() if k in names}
        cfgs[key] = RunConfig(*key, out=str(out / "-".join(key)), overwrite=True, **{**common, "hparams": own})
    settings = {key: row_settings(config, cfg) for key, cfg in cfgs.items()}
    outputs = [ALL_RECORD, ALL_TABLE] + [f"{'-'.join(key)}/{RESULT_NAME}" for key in rows]
    prepare_out_dir(out, resume, overwrite, outputs=outputs)
    reused, to_run, refused = {}, [], []
    for key in rows:
        path = out / "-".join(key) / RESULT_NAME
        prior, diff = _prior_result(path, cfgs[key], settings[key]) if resume else (None, [])
        if diff:
            refused.append(f"{path} was written with other settings: {'; '.join(diff)}")
        elif prior is not None:
            reused[key] = prior
        else:
            to_run.append((key, cfgs[key], settings[key]))
    if refused:
        raise ValueError("--resume: " + "\n".join(refused) + "\nRun with those rows' settings, remove their folders to "
                         "rerun them, or use another --out")  # fmt: skip
    return AllPlan(config, out, common, reused, to_run)


def run_all(plan: AllPlan, jobs: int = 1, threads: int = 1) -> list[dict[str, Any]]:
    """Every row of the config's ``all`` section: ``--jobs`` rows at a time in worker processes
    (``--threads`` each), longest first. Under ``--resume`` the finished rows in ``--out`` that
    were written with the same settings are reused, so an interrupted ``--all`` continues."""
    import concurrent.futures
    import multiprocessing
    import platform

    num_splits, epochs = plan.common.get("num_splits"), plan.common.get("epochs")
    t0 = time.time()
    load_start = os.getloadavg()
    results = dict(plan.reused)
    for key in plan.reused:
        print(f"{' '.join(key)}: reusing {plan.out / '-'.join(key) / RESULT_NAME}", flush=True)
    rows, loaded = [], {}
    for key, cfg, hp in plan.to_run:
        # loading here, in one process, writes PyG's processed/ files before the workers
        # start (two workers processing the same raw files at once would race)
        graph = hp.get("graph", "as_loaded")
        if (cfg.dataset, cfg.splits, graph) not in loaded:
            loaded[(cfg.dataset, cfg.splits, graph)] = load_node_dataset(cfg.dataset, cfg.splits, cfg.data_root, graph=graph)
        rows.append((_cost(cfg.model, loaded[(cfg.dataset, cfg.splits, graph)], hp, cfg.epochs), key, cfg))
    rows.sort(key=lambda r: -r[0])
    if jobs == 1:
        torch.set_num_threads(threads)
        for _, key, cfg in rows:
            results[key] = run(cfg)
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_run_row, cfg, threads): key for _, key, cfg in rows}
            for fut in concurrent.futures.as_completed(futures):
                results[futures[fut]] = fut.result()
    ordered = _order(list(results.values()))
    load_end = os.getloadavg()
    command = (f"python recipes/node_classification.py --all --jobs {jobs} --threads {threads}"
               f"{' --num-splits ' + str(num_splits) if num_splits else ''}"
               f"{' --epochs ' + str(epochs) if epochs else ''}")  # fmt: skip
    record = {
        "command": command, "device": plan.common.get("device", "cpu"), "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "wall_seconds": time.time() - t0, "rows_run": len(rows), "rows_reused": len(plan.reused),
        "load_start": load_start[0], "load_end": load_end[0], "rows": sorted("-".join(k) for k in results),
    }  # fmt: skip
    out = plan.out
    atomic_write_text(json.dumps(record, indent=2) + "\n", out / ALL_RECORD)
    atomic_write_text(all_report(record, ordered), out / ALL_TABLE)
    print(markdown_table(ordered))
    print(f"-> {out / ALL_TABLE}; to update a committed table: python recipes/node_classification.py --collect "
          f"{out} --write-table PATH", flush=True)  # fmt: skip
    return ordered
