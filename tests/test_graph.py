from pathlib import Path

import geopandas as gpd
import libpysal
import numpy as np
import pytest
import shapely

from datasets import build_district_graph


def _edges(graph):
    source, target = graph.edge_index.numpy()
    return {(int(a), int(b)) for a, b in zip(source, target, strict=True)}


EXAMPLES = Path(libpysal.examples.__file__).parent


@pytest.mark.parametrize(
    "example",
    ["columbus/columbus.shp", "chicago/Chicago77.shp", "tokyo/tokyomet262.shp", "sids2/sids2.shp"],
)
def test_queen_graph_equals_libpysal_on_real_polygons(example):
    districts = gpd.read_file(EXAMPLES / example).reset_index(drop=True)
    districts["district_id"] = [str(i) for i in range(len(districts))]
    graph = build_district_graph(districts)
    weights = libpysal.weights.Queen.from_dataframe(
        districts, use_index=False, silence_warnings=True
    )
    expected = {(i, j) for i, neighbours in weights.neighbors.items() for j in neighbours}
    assert _edges(graph) == expected
    assert graph.num_nodes == len(districts)
    assert graph.district_ids == list(districts["district_id"])
    islands = [i for i, neighbours in weights.neighbors.items() if not neighbours]
    if example.startswith("tokyo"):
        assert islands  # Tokyo's outlying islands stay as nodes without edges


def test_island_is_kept_and_extra_links_added():
    squares = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(5, 5, 6, 6)]
    districts = gpd.GeoDataFrame({"district_id": ["a", "b", "island"]}, geometry=squares)
    graph = build_district_graph(districts)
    assert graph.num_nodes == 3
    assert _edges(graph) == {(0, 1), (1, 0)}
    linked = build_district_graph(districts, extra_edges=[("a", "island", 0.5)])
    assert _edges(linked) == {(0, 1), (1, 0), (0, 2), (2, 0)}
    assert np.isclose(sorted(linked.edge_weight.tolist())[0], 0.5)


def test_corner_touch_is_a_queen_neighbour():
    squares = [shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)]
    districts = gpd.GeoDataFrame({"district_id": ["a", "b"]}, geometry=squares)
    assert _edges(build_district_graph(districts)) == {(0, 1), (1, 0)}
