"""gnnkit layers in PyG models, in numbers: torch.compile graph breaks and compile time of every
gnnkit layer and of the MPNN against its PyG counterpart, measured in the same run.

    python recipes/pyg_interop.py --out runs/pyg_interop      # writes pyg_interop.md and .json

Graph breaks are ``torch._dynamo.explain``'s count for one call on PyG-style inputs (``x``,
``edge_index``, per-edge tensors), and for gnnkit also on a prebuilt :class:`gnnkit.nn.Graph`.
Compile time is the wall clock of the first call of ``torch.compile(backend="eager")`` on three
graphs of different sizes (dynamo's tracing; no code generation), summed. Targets (issue 16): no
more breaks than PyG's layer, 0 on a prebuilt graph, the MPNN no more than PyG's qm9_nn_conv
model; compile time within 2x of PyG's. The behaviour rows (sparse adjacency, to_hetero, fx,
lazy sizes, half precision, explainers) are tests: tests/nn/test_pyg_interop.py.

Timings need an idle machine: the report records the load (``gnnkit.bench.probes.MachineLoad``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from gnnkit.bench.synthetic import complete_edges
from gnnkit.models import build_model
from gnnkit.models.pyg_reference import PygQM9NNConv
from gnnkit.nn import EdgeNetworkConv, GCNConv, GGNNConv, GINConv, Graph, RelationalConv, Set2Set
from gnnkit.cli.options import add_options, given_options
from gnnkit.train.outdir import prepare_out_dir, releases_out_dirs
from gnnkit.bench.probes import MachineLoad, compile_seconds, git_commit, graph_breaks

F, EDGE_DIM, TYPES = 16, 5, 3
SIZES = (20, 35, 50)  # nodes of the three graphs compiled


@dataclass
class Config:
    out: str = field(default="runs/pyg_interop", metadata={"help": "output folder (must be empty or absent)"})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads"})
    layers: tuple[str, ...] = field(default=(), metadata={"help": "only these layer rows (names as in the table; "
                                    "default: all); the MPNN row is always measured", "parse": lambda t: tuple(x.strip() for x in t.split(","))})

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        unknown = sorted(set(self.layers) - set(_pairs()))
        if unknown:
            raise ValueError(f"unknown --layers {unknown}; valid: {list(_pairs())}")


def _inputs(n: int, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    e = 4 * n
    return {
        "x": torch.randn(n, F, generator=g),
        "edge_index": torch.randint(0, n, (2, e), generator=g),
        "edge_attr": torch.randn(e, EDGE_DIM, generator=g),
        "edge_type": torch.randint(0, TYPES, (e,), generator=g),
        "batch": torch.arange(n) * 3 // n,  # three graphs
    }


def _molecules(sizes: tuple[int, ...], seed: int) -> Batch:
    data = []
    for i, n in enumerate(sizes):
        g = torch.Generator().manual_seed(seed + i)
        ei = complete_edges(n)
        data.append(Data(x=torch.randn(n, 11, generator=g), edge_index=ei, edge_attr=torch.rand(ei.size(1), EDGE_DIM, generator=g)))
    return Batch.from_data_list(data)


def _pairs() -> dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], Callable[[dict], tuple], Callable[[dict], tuple]]]:
    """name -> (PyG layer, gnnkit layer, PyG call arguments, gnnkit call arguments)."""
    from torch_geometric.nn import GatedGraphConv, GINConv as PygGIN, GCNConv as PygGCN, NNConv, RGCNConv
    from torch_geometric.nn.aggr import Set2Set as PygSet2Set

    def edge_mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(EDGE_DIM, 32), nn.ReLU(), nn.Linear(32, F * F))

    return {
        "GCNConv": (lambda: PygGCN(F, F), lambda: GCNConv(F, F),
                    lambda d: (d["x"], d["edge_index"]), lambda d: (d["x"], d["edge_index"])),
        "EdgeNetworkConv / NNConv": (lambda: NNConv(F, F, edge_mlp(), aggr="mean"), lambda: EdgeNetworkConv(F, F, aggr="mean", root_weight=False, edge_dim=EDGE_DIM, hidden=32),
                                     lambda d: (d["x"], d["edge_index"], d["edge_attr"]), lambda d: (d["x"], d["edge_index"], d["edge_attr"])),
        "GGNNConv / GatedGraphConv": (lambda: GatedGraphConv(F, 1), lambda: GGNNConv(F, TYPES),
                                      lambda d: (d["x"], d["edge_index"]), lambda d: (d["x"], d["edge_index"], d["edge_type"])),
        "RelationalConv / RGCNConv": (lambda: RGCNConv(F, F, TYPES, aggr="add"), lambda: RelationalConv(F, F, TYPES, aggr="add", root_weight=False),
                                      lambda d: (d["x"], d["edge_index"], d["edge_type"]), lambda d: (d["x"], d["edge_index"], d["edge_type"])),
        "GINConv": (lambda: PygGIN(nn.Linear(F, F)), lambda: GINConv(nn.Linear(F, F)),
                    lambda d: (d["x"], d["edge_index"]), lambda d: (d["x"], d["edge_index"])),
        "Set2Set": (lambda: _PygSet2Set(PygSet2Set(F, 3)), lambda: Set2Set(F, 3),
                    lambda d: (d["x"], d["batch"], 3), lambda d: (d["x"], d["batch"], 3)),
    }  # fmt: skip


class _PygSet2Set(nn.Module):
    """PyG's aggregation takes its graph count as ``dim_size``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x, batch, num_graphs):
        return self.inner(x, batch, dim_size=num_graphs)


def measure(layers: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    rows = []
    data = [_inputs(n, i) for i, n in enumerate(SIZES)]
    for name, (pyg, ours, pyg_args, our_args) in _pairs().items():
        if layers and name not in layers:
            continue
        torch.manual_seed(0)
        p, g = pyg(), ours()
        row = {"layer": name, "pyg_breaks": graph_breaks(p, *pyg_args(data[0]))[0], "gnnkit_breaks": graph_breaks(g, *our_args(data[0]))[0]}
        args = our_args(data[0])
        if isinstance(g, Set2Set):
            prebuilt = (args[0], Graph.from_edge_index(data[0]["edge_index"], SIZES[0], batch=args[1], num_graphs=3))
        else:
            prebuilt = (args[0], g.prepare(Graph.from_edge_index(args[1], SIZES[0], **_edge_kwargs(g, args))))
        row["gnnkit_breaks_prebuilt"] = graph_breaks(g, *prebuilt)[0]
        row["pyg_compile_s"] = compile_seconds(p, [pyg_args(d) for d in data])
        row["gnnkit_compile_s"] = compile_seconds(g, [our_args(d) for d in data])
        rows.append(row)
    # the whole models on a PyG Batch of complete-graph molecules, and MPNN on its prepared Graph
    batches = [_molecules(s, i) for i, s in enumerate(((5, 7, 9), (6, 8), (4, 9, 5, 6)))]
    torch.manual_seed(0)
    ours, pyg = build_model("mpnn", 11, 1, edge_dim=EDGE_DIM), PygQM9NNConv(11, 1, edge_dim=EDGE_DIM)
    rows.append({
        "layer": "MPNN / PyG qm9_nn_conv model",
        "pyg_breaks": graph_breaks(pyg, batches[0])[0], "gnnkit_breaks": graph_breaks(ours, batches[0])[0],
        "gnnkit_breaks_prebuilt": graph_breaks(ours, ours.prepare(batches[0]))[0],
        "pyg_compile_s": compile_seconds(pyg, [(b,) for b in batches]),
        "gnnkit_compile_s": compile_seconds(ours, [(b,) for b in batches]),
    })  # fmt: skip
    for row in rows:
        row["compile_ratio"] = row["gnnkit_compile_s"] / max(row["pyg_compile_s"], 1e-9)
    return rows


def _edge_kwargs(layer: nn.Module, args: tuple) -> dict[str, Any]:
    if len(args) < 3:
        return {}
    return {layer.edge_input: args[2]}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# gnnkit layers against PyG's: graph breaks and compile time",
        "",
        f"Command: `{meta['command']}`. Device: {meta['device']}, {meta['threads']} thread(s); torch {meta['torch']}, "
        f"torch_geometric {meta['pyg']}; commit {meta['commit']}. {meta['load']}",
        "",
        "Graph breaks: `torch._dynamo.explain` on one call with PyG-style inputs (and, for gnnkit, on a prebuilt "
        "`gnnkit.nn.Graph`). Compile time: first call of `torch.compile(backend=\"eager\")` on three graphs of different "
        f"sizes ({', '.join(map(str, SIZES))} nodes; MPNN: three batches of molecules), summed. Targets: breaks <= PyG's, "
        "0 on a prebuilt graph, compile time <= 2x PyG's.",
        "",
        "| layer | graph breaks PyG | gnnkit | gnnkit, prebuilt Graph | compile s PyG | gnnkit | gnnkit / PyG |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['pyg_breaks']} | {r['gnnkit_breaks']} | {r['gnnkit_breaks_prebuilt']} | "
            f"{r['pyg_compile_s']:.2f} | {r['gnnkit_compile_s']:.2f} | {r['compile_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


@releases_out_dirs
def main(config: Config) -> list[dict[str, Any]]:
    out = Path(config.out)
    prepare_out_dir(out, outputs=("pyg_interop.md", "pyg_interop.json"))
    torch.set_num_threads(config.threads)
    warnings.filterwarnings("ignore")  # PyG's sparse-tensor and dynamo notices
    load = MachineLoad(own_threads=config.threads)
    load.sample()
    rows = measure(config.layers)
    load.sample()
    meta = {
        "command": " ".join(["python", "recipes/pyg_interop.py", *sys.argv[1:]]), "device": f"CPU ({platform.processor() or platform.machine()})",
        "threads": config.threads, "torch": torch.__version__, "pyg": __import__("torch_geometric").__version__,
        "commit": git_commit(Path(__file__).resolve().parents[1]) or "unknown", "load_summary": load.summary(),
    }  # fmt: skip
    summary = meta["load_summary"]
    meta["load"] = (f"Load: {summary['verdict']}; 1-minute load average {summary['load_average']['start']} at the start, "
                    f"{summary['load_average']['end']} at the end.")  # fmt: skip
    (out / "pyg_interop.md").write_text(markdown(rows, meta))
    (out / "pyg_interop.json").write_text(json.dumps({"meta": meta, "config": asdict(config), "rows": rows}, indent=1))
    print(markdown(rows, meta))
    return rows


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, Config)
    try:
        return Config(**given_options(p.parse_args(argv)))
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
