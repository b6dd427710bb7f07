"""Node classification: GCN, TDGNN-s/-w and NHGCN on the Planetoid / Geom-GCN benchmarks.

    python recipes/node_classification.py --model tdgnn-w --dataset texas --splits geom-gcn
    python recipes/node_classification.py --all            # every model on every dataset

Runs every split of the protocol with the per-dataset hyperparameters of
recipes/configs/node_classification.json (taken from the papers' reference scripts), prints
``mean ± std`` of the test accuracy next to the paper's number and, with ``--out DIR``, writes
``DIR/result.json``. ``std`` is the population standard deviation over the splits (what TDGNN's
``main.py`` prints). Run ``i`` of a protocol uses split ``i`` and ``torch.manual_seed(i)``; the
public split is run 10 times with seeds 0..9.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gnnkit.data.node_classification import NODE_DATASETS, SPLITS, graph_key, load_node_dataset
from gnnkit.models import build_model
from gnnkit.models.nhgcn import NHGCN
from gnnkit.models.tdgnn import TreeOperators
from gnnkit.ops import khop_neighbourhood, neighbourhood_homophily
from gnnkit.train.node import NodeResult, train_node_classifier

MODELS = ("gcn", "tdgnn-s", "tdgnn-w", "nhgcn")
CONFIG = pathlib.Path(__file__).resolve().parent / "configs" / "node_classification.json"
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


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


def lookup(config: dict, model: str, splits: str, dataset: str) -> dict[str, Any]:
    """settings[model][splits][dataset] -> [splits]['*'] -> ['*'][dataset] -> ['*']['*']."""
    table = config["settings"][model]
    for a, b in ((splits, dataset), (splits, "*"), ("*", dataset), ("*", "*")):
        if b in table.get(a, {}):
            return {**table.get("_all", {}), **table[a][b]}
    raise KeyError(f"no settings for {model} / {splits} / {dataset}")


def paper_number(config: dict, model: str, splits: str, dataset: str, key: str = "paper") -> float | None:
    return config.get(key, {}).get(model, {}).get(splits, {}).get(dataset)


def _tdgnn_operators(data, hp: dict, device: str) -> TreeOperators:
    """The tree operators of this graph, cached on disk beside the dataset (datasets/**/cache)."""
    levels, hops, sym = list(hp["levels"]), int(hp.get("max_hops", 10)), bool(hp.get("symmetric", False))
    path = pathlib.Path(data.cache_dir) / f"tdgnn-{graph_key(data.edge_index, data.num_nodes, levels, hops, sym)}.pt"
    if path.exists():
        pairs = torch.load(path)
    else:
        from gnnkit.ops import tree_decomposition

        pairs = tree_decomposition(data.edge_index, data.num_nodes, levels, hops, sym)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename, so a concurrent run (--all --jobs) never reads a half-written file
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(pairs, tmp)
        os.replace(tmp, path)
    return TreeOperators.from_pairs(pairs, data.num_nodes).to(device)


class Runner:
    """Builds what a model needs once per dataset, then trains one split at a time."""

    def __init__(self, model: str, data, hp: dict, device: str, epochs: int | None) -> None:
        self.name, self.data, self.hp, self.device = model, data, hp, device
        self.epochs = int(epochs or hp["epochs"])
        self.x_sparse = data.x.to_sparse().to(device)
        self.y = data.y.to(device)
        self.edge_index = data.edge_index.to(device)
        if model.startswith("tdgnn"):
            self.operators = _tdgnn_operators(data, hp, device)
        if model == "nhgcn":
            # nh_variant "reference_code" (the config's default) reproduces two quirks of
            # rockcor/NHGCN's NH estimate (see khop_neighbourhood(drop_lowest_id=...) and reestimate
            # below); "as_described" is the documented rule: N_k(i) with or without i, true labels
            # on training nodes.
            variant = hp.get("nh_variant", "reference_code")
            if variant not in ("reference_code", "as_described"):
                raise ValueError(f"nh_variant must be 'reference_code' or 'as_described', got {variant!r}")
            self.nh_reference = variant == "reference_code"
            include = bool(hp["includeself"])
            self.neigh = khop_neighbourhood(
                self.edge_index, data.num_nodes, int(hp["hops"]), include, drop_lowest_id=self.nh_reference and not include
            )

    def run_split(self, i: int, seed: int) -> NodeResult:
        torch.manual_seed(seed)
        d, hp = self.data, self.hp
        masks = [m[:, i].to(self.device) for m in (d.train_mask, d.val_mask, d.test_mask)]
        f, c = d.num_features, d.num_classes
        if self.name == "gcn":
            model = build_model("gcn", f, c, hidden=hp["hidden"], dropout=hp["dropout"], cached=True).to(self.device)
            graph = type(d)(x=self.x_sparse, edge_index=self.edge_index)
            optimizer = torch.optim.Adam(
                [
                    {"params": model.conv1.parameters(), "weight_decay": hp["weight_decay"]},
                    {"params": model.conv2.parameters(), "weight_decay": 0.0},
                ],
                lr=hp["lr"],
            )
            return train_node_classifier(
                model, lambda: model(graph), optimizer, self.y, *masks, self.epochs,
                select=hp["select"], early_stopping=hp["early_stopping"], early_stopping_start=hp["early_stopping"],
            )
        if self.name.startswith("tdgnn"):
            model = build_model(
                self.name, f, c, levels=hp["levels"], hidden=hp["hidden"], dropout1=hp["dropout1"], dropout2=hp["dropout2"]
            ).to(self.device)
            optimizer = torch.optim.Adam(model.param_groups(hp["wd1"], hp["wd2"], hp.get("wd3", 0.0)), lr=hp["lr"])
            return train_node_classifier(
                model, lambda: model(self.x_sparse, self.operators), optimizer, self.y, *masks, self.epochs,
                select="val_loss", early_stopping=hp["early_stopping"],
            )
        model = build_model(
            "nhgcn", f, c, hidden=hp["hidden"], dropout=hp["dropout"], final_dropout=hp["finaldp"],
            ego=hp.get("ego", "reference"),
        ).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["wd"])
        n, add_self = d.num_nodes, bool(hp["addself"])
        train_mask = masks[0]
        state = {"graphs": NHGCN.channel_graphs(self.edge_index, n, torch.ones(n, dtype=torch.bool), add_self)}

        def reestimate(logits: Tensor) -> None:
            # true labels on training nodes, predictions elsewhere; high NH <=> 1/NH <= threshold
            pred = logits.argmax(1)
            if self.nh_reference:
                # the reference's one-hot broadcasts [N, 1] * [N] to [N, N] and so marks a training
                # node with both its true label and its prediction
                labels = torch.nn.functional.one_hot(pred, c).float()
                labels[train_mask, self.y[train_mask]] = 1.0
            else:
                labels = torch.where(train_mask, self.y, pred)
            nh = neighbourhood_homophily(self.neigh, labels, n)
            high = nh >= 1.0 / float(hp["threshold"])
            state["graphs"] = NHGCN.channel_graphs(self.edge_index, n, high, add_self)

        return train_node_classifier(
            model, lambda: model(self.x_sparse, *state["graphs"]), optimizer, self.y, *masks, self.epochs,
            select="val_acc", patience=int(hp["patience"]), on_improve=reestimate,
        )


def run(cfg: RunConfig) -> dict[str, Any]:
    if cfg.model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS}, got {cfg.model!r}")
    if cfg.dataset not in NODE_DATASETS:
        raise ValueError(f"--dataset must be one of {NODE_DATASETS}, got {cfg.dataset!r}")
    if cfg.splits not in SPLITS:
        raise ValueError(f"--splits must be one of {SPLITS}, got {cfg.splits!r}")
    config = json.loads(pathlib.Path(cfg.config_file).read_text())
    hp = {**lookup(config, cfg.model, cfg.splits, cfg.dataset), **cfg.hparams}
    start = time.time()
    data = load_node_dataset(cfg.dataset, cfg.splits, cfg.data_root, graph=hp.get("graph", "as_loaded"))
    runner = Runner(cfg.model, data, hp, cfg.device, cfg.epochs)
    n_runs = 10 if cfg.splits == "public" else data.train_mask.size(1)
    if cfg.num_splits is not None:
        n_runs = min(n_runs, cfg.num_splits)
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
    if cfg.out:
        out = pathlib.Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=2))
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


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--dataset", choices=NODE_DATASETS)
    p.add_argument("--splits", choices=SPLITS)
    p.add_argument("--all", action="store_true", help="every model on every dataset (config 'all'), table to --results-dir")
    p.add_argument("--data-root", default=None, help="data root with planetoid/, webkb/, wikipedia/, actor/ (default: "
                   "$GNNKIT_DATA, else the checkout's datasets/, else ~/.cache/gnnkit)")
    p.add_argument("--out", default=None, help="write DIR/result.json (with --all: DIR/<model>-<dataset>-<splits>/)")
    p.add_argument("--results-dir", default=str(RESULTS))
    p.add_argument("--num-splits", type=int, default=None, help="run only the first n splits")
    p.add_argument("--epochs", type=int, default=None, help="override the configured number of epochs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--collect", default=None, metavar="DIR", help="only tabulate DIR/*/result.json into --results-dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (value parsed as JSON)")
    p.add_argument("--jobs", type=int, default=1, help="with --all: rows run at once, each in its own process")
    p.add_argument("--threads", type=int, default=1, help="with --all: torch threads per row")
    args = p.parse_args(argv)
    hparams = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        try:
            hparams[key] = json.loads(value)
        except json.JSONDecodeError:
            hparams[key] = value
    common = dict(
        data_root=args.data_root, num_splits=args.num_splits, epochs=args.epochs, device=args.device,
        config_file=args.config, hparams=hparams,
    )
    if args.collect:
        results = [json.loads(f.read_text()) for f in sorted(pathlib.Path(args.collect).glob("*/result.json"))]
        order = {m: i for i, m in enumerate(MODELS)}
        results.sort(key=lambda r: (order[r["model"]], r["splits"], NODE_DATASETS.index(r["dataset"])))
        dest = pathlib.Path(args.results_dir)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "node_classification_table.md").write_text(markdown_table(results))
        print(markdown_table(results))
        return results
    if not args.all:
        missing = [k for k in ("model", "dataset", "splits") if getattr(args, k) is None]
        if missing:
            p.error(f"give --all or all of --model/--dataset/--splits (missing: {', '.join(missing)})")
        return [run(RunConfig(args.model, args.dataset, args.splits, out=args.out, **common))]
    return run_all(args, common)


def _settings(hp: dict[str, Any]) -> dict[str, Any]:
    """The settings that change a run: everything but the config's ``source*`` notes."""
    return {k: v for k, v in hp.items() if not k.startswith("source")}


def _reusable(path: pathlib.Path, cfg: RunConfig, hp: dict[str, Any]) -> dict[str, Any] | None:
    """A finished row's result.json, if it was run with the same settings (so --all can resume)."""
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (
        "num_splits" in result and "epochs" in result and _settings(result.get("hparams") or {}) == _settings(hp)
        and result["num_splits"] == cfg.num_splits and result["epochs"] == cfg.epochs
    )
    return result if same else None


def _cost(model: str, data, hp: dict[str, Any], epochs: int | None) -> float:
    """Rough cost of one row (for scheduling the longest rows first): epochs x splits x work per epoch."""
    runs = 10 if data.train_mask.size(1) == 1 else data.train_mask.size(1)
    width = hp.get("hidden", 16) * (2 if model == "nhgcn" else 1)
    per_epoch = data.x.count_nonzero().item() * width + data.edge_index.size(1) * width
    if model.startswith("tdgnn"):
        per_epoch += 2e5 * len(hp["levels"]) * data.num_classes
    return float(epochs or hp["epochs"]) * runs * per_epoch


def _run_row(cfg: RunConfig, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return run(cfg)


def run_all(args: argparse.Namespace, common: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of the config's ``all`` section: ``--jobs`` rows at a time in worker processes
    (``--threads`` each), longest first. With ``--out``, a row whose ``result.json`` was written with
    the same settings is reused, so an interrupted ``--all`` resumes where it stopped."""
    import concurrent.futures
    import multiprocessing
    import platform

    if args.jobs < 1 or args.threads < 1:
        raise ValueError(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    config = json.loads(pathlib.Path(args.config).read_text())
    t0 = time.time()
    load_start = os.getloadavg()
    rows, results, reused, loaded = [], {}, 0, {}
    for model, protocols in config["all"].items():
        for splits, datasets in protocols.items():
            for dataset in datasets:
                out = str(pathlib.Path(args.out) / f"{model}-{dataset}-{splits}") if args.out else None
                cfg = RunConfig(model, dataset, splits, out=out, **common)
                hp = {**lookup(config, model, splits, dataset), **cfg.hparams}
                key = (model, dataset, splits)
                prior = _reusable(pathlib.Path(out) / "result.json", cfg, hp) if out else None
                if prior is not None:
                    results[key] = prior
                    reused += 1
                    print(f"{model} {dataset} {splits}: reusing {out}/result.json", flush=True)
                    continue
                # loading here, in one process, writes PyG's processed/ files before the workers
                # start (two workers processing the same raw files at once would race)
                graph = hp.get("graph", "as_loaded")
                if (dataset, splits, graph) not in loaded:
                    loaded[(dataset, splits, graph)] = load_node_dataset(dataset, splits, cfg.data_root, graph=graph)
                data = loaded[(dataset, splits, graph)]
                rows.append((_cost(model, data, hp, cfg.epochs), key, cfg))
    rows.sort(key=lambda r: -r[0])
    if args.jobs == 1:
        torch.set_num_threads(args.threads)
        for _, key, cfg in rows:
            results[key] = run(cfg)
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_run_row, cfg, args.threads): key for _, key, cfg in rows}
            for fut in concurrent.futures.as_completed(futures):
                results[futures[fut]] = fut.result()
    order = {m: i for i, m in enumerate(MODELS)}
    ordered = sorted(results.values(), key=lambda r: (order[r["model"]], r["splits"], NODE_DATASETS.index(r["dataset"])))
    table = markdown_table(ordered)
    total = time.time() - t0
    load_end = os.getloadavg()
    dest = pathlib.Path(args.results_dir)
    dest.mkdir(parents=True, exist_ok=True)
    cpu = platform.processor() or platform.machine()
    row_seconds = sum(r["seconds"] for r in ordered)
    (dest / "node_classification_all.md").write_text(
        f"# Node classification, all models\n\n"
        f"Command: `python recipes/node_classification.py --all --jobs {args.jobs} --threads {args.threads}"
        f"{' --num-splits ' + str(args.num_splits) if args.num_splits else ''}"
        f"{' --epochs ' + str(args.epochs) if args.epochs else ''}`, device {args.device} ({cpu}, "
        f"{os.cpu_count()} cores), wall time {total:.0f} s for {len(rows)} rows run here"
        f"{f' ({reused} rows reused from an earlier run under --out)' if reused else ''}; "
        f"the rows' own times sum to {row_seconds:.0f} s. Load average (1 min) {load_start[0]:.1f} at the start, "
        f"{load_end[0]:.1f} at the end.\n\n{table}"
    )
    print(table)
    return ordered


if __name__ == "__main__":
    main(sys.argv[1:])
