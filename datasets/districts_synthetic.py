"""Synthetic district polygons and their public attributes over central Tokyo."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

BOUNDS = (139.68, 35.64, 139.82, 35.73)  # lon/lat box over central Tokyo
METRIC_CRS = "EPSG:6677"  # JGD2011 / Japan Plane Rectangular CS IX, metres
NAME_PARTS = (
    ["Kita", "Minami", "Higashi", "Nishi", "Naka", "Shin", "Kami", "Shimo", "Oo", "Ko"],
    ["kawa", "hara", "yama", "saka", "bashi", "machi", "dai", "zawa", "ta", "no"],
    ["", "cho", " Sanchome", " Nichome", "-ku"],
)


def synthetic_districts(n_districts: int, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Voronoi districts with population, land use, roads, elevation and night life.

    A river runs across the box; land near it is low (flood-prone), land far from
    it rises. Commercial districts draw night life and crowds; roads are denser
    where more people live.
    """
    west, south, east, north = BOUNDS
    points = np.column_stack(
        [rng.uniform(west, east, n_districts), rng.uniform(south, north, n_districts)]
    )
    box = shapely.box(*BOUNDS)
    cells = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=box, ordered=True)
    polygons = [shapely.intersection(cell, box) for cell in shapely.get_parts(cells)]
    districts = gpd.GeoDataFrame(
        {
            "district_id": [f"D{index:04d}" for index in range(n_districts)],
            "name": _names(n_districts, rng),
        },
        geometry=shapely.set_precision(np.array(polygons), 1e-7),
        crs="EPSG:4326",
    )
    return add_synthetic_attributes(districts, rng)


CAMERA_SHARE = 0.8  # districts with a street camera
LOW_GROUND_M = 10.0  # below this elevation most districts have a water-level gauge


def add_synthetic_attributes(
    districts: gpd.GeoDataFrame, rng: np.random.Generator
) -> gpd.GeoDataFrame:
    """Draw the public attributes the generator needs for any set of polygons.

    A river crosses the districts' bounding box; elevation rises with distance
    from it. Attributes the frame already has are kept.
    """
    districts = districts.to_crs("EPSG:4326").reset_index(drop=True)
    n_districts = len(districts)
    west, south, east, north = districts.total_bounds
    metric = districts.to_crs(METRIC_CRS)
    river = shapely.LineString(
        [
            (west + (east - west) * t, south + (north - south) * (0.45 + 0.15 * np.sin(5 * t)))
            for t in np.linspace(0, 1, 40)
        ]
    )
    river_metric = gpd.GeoSeries([river], crs="EPSG:4326").to_crs(METRIC_CRS).iloc[0]
    distance_km = metric.geometry.centroid.distance(river_metric).to_numpy() / 1000
    commercial = rng.beta(2, 5, n_districts)
    drawn = {
        "area_km2": metric.geometry.area.to_numpy() / 1e6,
        "population": np.round(rng.lognormal(9.5, 0.5, n_districts)).astype(int),
        "commercial_share": commercial,
        "residential_share": (1 - commercial) * rng.uniform(0.6, 0.95, n_districts),
        "road_density": np.clip(
            0.6 + 0.5 * commercial + rng.normal(0, 0.15, n_districts), 0.2, None
        ),
        "distance_to_river_km": distance_km,
        "elevation_m": np.clip(2 + 9 * distance_km + rng.normal(0, 2, n_districts), 0, None),
        "nightlife": np.clip(commercial * rng.uniform(0.5, 1.5, n_districts), 0, 1),
        "has_camera": rng.random(n_districts) < CAMERA_SHARE,
        "has_pedestrian_counter": rng.random(n_districts) < 0.4,
    }
    # Water-level gauges stand in drains and along the river: most low districts
    # have one, few high ones.
    low = drawn["elevation_m"] < LOW_GROUND_M
    drawn["has_water_gauge"] = rng.random(n_districts) < np.where(low, 0.9, 0.15)
    for column, values in drawn.items():
        if column not in districts.columns:
            districts[column] = values
    return districts


def _names(n: int, rng: np.random.Generator) -> list[str]:
    first, second, third = NAME_PARTS
    names: list[str] = []
    while len(names) < n:
        name = f"{rng.choice(first)}{rng.choice(second)}{rng.choice(third)}"
        if name not in names or len(names) >= len(first) * len(second) * len(third):
            names.append(name if name not in names else f"{name} {len(names)}")
    return names
