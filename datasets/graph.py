"""The public graph of districts: who touches whom.

Queen contiguity (districts that share an edge or a vertex are neighbours) is the
standard spatial weight in urban analysis; libpysal's `Queen.from_dataframe` is
the reference we are tested against. Isolated districts (islands) stay as nodes
without edges, so node order always equals district order.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
import torch
from torch_geometric.data import Data


def queen_neighbour_pairs(geometries: gpd.GeoSeries) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of polygons that share a boundary vertex.

    This is libpysal's queen rule (a shared vertex, hence also any shared edge),
    computed by grouping identical vertex coordinates, so it runs in linear time.
    Coordinates are rounded to 1e-10 to absorb floating-point noise only.
    """
    coords, owner = shapely.get_coordinates(geometries.boundary.values, return_index=True)
    if len(coords) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    keys = np.round(coords, 10)
    _, vertex = np.unique(keys, axis=0, return_inverse=True)
    table = np.unique(np.stack([vertex.ravel(), owner]), axis=1)
    pairs: set[tuple[int, int]] = set()
    starts = np.flatnonzero(np.r_[True, np.diff(table[0]) != 0, True])
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        owners = table[1, lo:hi]
        for a in range(len(owners)):
            for b in range(a + 1, len(owners)):
                pairs.add((int(owners[a]), int(owners[b])))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.array(sorted(pairs), dtype=np.int64)


def build_district_graph(
    districts: gpd.GeoDataFrame,
    extra_edges: list[tuple[str, str, float]] | None = None,
) -> Data:
    """The queen-contiguity graph of districts as an undirected PyG graph.

    Args:
        districts: Frame with ``district_id`` and polygon ``geometry``.
        extra_edges: Optional weighted links ``(district_id, district_id, weight)``
            such as roads or transit lines, added to the contiguity edges.

    Returns:
        `Data` with ``edge_index`` (2, E) holding both directions, ``edge_weight``
        (E,) (1.0 for contiguity), ``num_nodes`` and ``district_ids`` (the node
        order, equal to the frame's row order).
    """
    district_ids = [str(value) for value in districts["district_id"]]
    pairs = queen_neighbour_pairs(districts.geometry.reset_index(drop=True))
    weights = {(int(i), int(j)): 1.0 for i, j in pairs}
    row_of = {district: row for row, district in enumerate(district_ids)}
    for source, target, weight in extra_edges or []:
        i, j = sorted((row_of[str(source)], row_of[str(target)]))
        if i != j:
            weights[(i, j)] = max(weights.get((i, j), 0.0), float(weight))
    edges = sorted(weights)
    if edges:
        half = torch.tensor(edges, dtype=torch.long).t()
        edge_index = torch.cat([half, half.flip(0)], dim=1)
        edge_weight = torch.tensor([weights[e] for e in edges] * 2, dtype=torch.float32)
    else:
        edge_index = torch.zeros((2, 0), dtype=torch.long)
        edge_weight = torch.zeros(0, dtype=torch.float32)
    graph = Data(edge_index=edge_index, edge_weight=edge_weight, num_nodes=len(district_ids))
    graph.district_ids = district_ids
    return graph
