"""The step graph as Graphviz dot, Mermaid or JSON (``cadence graph``)."""

from __future__ import annotations

import json

import networkx as nx

from cadence.compiler.graph import StepGraph, typed_edges

_STYLE = {"next": "solid", "same_time": "dashed", "reply_to": "dotted"}


def render_graph(graph: StepGraph, format: str, name: str) -> str:
    if format == "dot":
        return _dot(graph, name)
    if format == "mermaid":
        return _mermaid(graph)
    data = nx.node_link_data(graph, edges="edges")
    return json.dumps({"name": name, **data}, indent=2, default=str) + "\n"


def _label(graph: StepGraph, node: str) -> str:
    data = graph.nodes[node]
    return f"{node}\n{data['kind']}, day {data['day']}"


def _quoted(text: str) -> str:
    """A DOT quoted string: quotes and backslashes escaped, a line break as
    DOT's own ``\\n``, any other character as it is (DOT files are UTF-8)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


def _dot(graph: StepGraph, name: str) -> str:
    lines = [f"digraph {_quoted(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for node in graph.nodes:
        lines.append(f"  {_quoted(node)} [label={_quoted(_label(graph, node))}];")
    for source, target, kind in typed_edges(graph):
        lines.append(
            f"  {_quoted(source)} -> {_quoted(target)} [label={_quoted(kind)}, "
            f"style={_STYLE[kind]}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid(graph: StepGraph) -> str:
    ids = {node: f"s{n}" for n, node in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for node, key in ids.items():
        data = graph.nodes[node]
        lines.append(f'  {key}["{node}<br/>{data["kind"]}, day {data["day"]}"]')
    arrows = {"next": "-->", "same_time": "-.->", "reply_to": "==>"}
    for source, target, kind in typed_edges(graph):
        lines.append(f"  {ids[source]} {arrows[kind]}|{kind}| {ids[target]}")
    return "\n".join(lines) + "\n"
