"""What the graph converters share: pruning dead nodes, writing files whole."""
from __future__ import annotations

import os
from pathlib import Path


def prune(graph):
    """Drop nodes none of whose outputs is used, until none is left.

    ONNX Runtime runs a dead node on every call all the same.

    Parameters
    ----------
    graph : onnx.GraphProto
        Changed in place.
    """
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(keep)


def write_whole(path, data: bytes):
    """Write ``path`` through a temporary file and a rename: never half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
