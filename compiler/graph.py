"""The step graph: one node per step, edges typed `next`, `same_time`, `reply_to`.

Nodes are keyed by step name, the stable id. ``same_time`` points from an
email with `send with previous` to the email whose time of day it takes;
``reply_to`` from a `follow up` email to the step before it. It is a
``MultiDiGraph`` (a DiGraph that may hold both a ``same_time`` and a
``reply_to`` edge between the same two steps).
"""

from __future__ import annotations

import itertools
from typing import TypeAlias

import networkx as nx

from cadence.compiler.ir import Edge
from cadence.compiler.steps import Alignment, StepRef
from cadence.grammar import ast

StepGraph: TypeAlias = "nx.MultiDiGraph[str]"
EDGE_KINDS = ("next", "same_time", "reply_to")


def build_graph(refs: list[StepRef], aligned: dict[int, Alignment]) -> StepGraph:
    graph: StepGraph = nx.MultiDiGraph()
    for ref in refs:
        if ref.id not in graph:  # a repeated name is reported; the first one stands
            graph.add_node(ref.id, kind=ref.step.kind, day=ref.day, index=ref.index)
    for before, after in itertools.pairwise(refs):
        graph.add_edge(before.id, after.id, key="next", kind="next")
    for index, alignment in aligned.items():
        if alignment.target is not None:
            target = refs[alignment.target].id
            graph.add_edge(refs[index].id, target, key="same_time", kind="same_time")
    for ref in refs:
        if isinstance(ref.step, ast.EmailStep) and ref.step.follow_up and ref.index > 0:
            graph.add_edge(ref.id, refs[ref.index - 1].id, key="reply_to", kind="reply_to")
    return graph


def typed_edges(graph: StepGraph) -> list[tuple[str, str, str]]:
    return [(source, target, data["kind"]) for source, target, data in graph.edges(data=True)]


def same_time_cycle(graph: StepGraph) -> list[str] | None:
    """Step names that align with each other in a circle (possible only when
    two steps share a name), or ``None``."""
    aligned: nx.DiGraph[str] = nx.DiGraph()
    aligned.add_edges_from((s, t) for s, t, kind in typed_edges(graph) if kind == "same_time")
    try:
        cycle = nx.find_cycle(aligned)
    except nx.NetworkXNoCycle:
        return None
    return [str(edge[0]) for edge in cycle]


def edges(graph: StepGraph) -> list[Edge]:
    """The edges in a stable order: by kind, then by the steps' order."""
    index = {node: data["index"] for node, data in graph.nodes(data=True)}
    found = sorted(
        typed_edges(graph),
        key=lambda e: (EDGE_KINDS.index(e[2]), index[e[0]], index[e[1]]),
    )
    return [Edge.model_validate({"source": s, "target": t, "kind": k}) for s, t, k in found]
