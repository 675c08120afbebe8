"""A synthetic city whose risks have known causes spread across the modalities.

The generator draws hidden factors — storms, heat, festivals, night life, low
ground — and derives every observation and every event from them, so that each
modality sees part of the cause and none sees all of it:

- rain and heat are measured by the sensors (rain also wets the camera frames);
- festivals are announced in text reports, hours before the crowd comes, and
  their stalls show in camera frames from the morning of the day;
- crowding shows in camera frames, and in pedestrian counters where they exist;
- low ground and night life are public static attributes of the districts; the
  water-level gauges that stand in most low districts see rain pooling there;
- risk spills over to neighbours through the district graph.

Every strong cause is seen by two modalities where the city has the devices
(festivals: reports and cameras; flooding: low ground and water gauges), as in a
real city, so a model can lose one modality and still see it; each modality
also sees something no other does (festivals where no camera stands, heat,
crowding where no counter stands, low ground without a gauge).

Everything is drawn from one seed, so the same arguments give the same city.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from datasets.city import City
from datasets.districts_synthetic import METRIC_CRS, add_synthetic_attributes, synthetic_districts
from datasets.frames_synthetic import render_frames
from datasets.graph import build_district_graph
from datasets.oracle import Oracle
from datasets.reports_synthetic import write_reports
from datasets.synthetic_clock import CITY_START, UTC_OFFSET_HOURS, local_hour

SENSOR_INTERVALS_HOURS = np.array([1, 2, 3])
SENSOR_INTERVAL_SHARES = np.array([0.7, 0.2, 0.1])
PREPARATION_HOURS = 9  # stalls go up this long before a festival's crowd starts
TARGET_WINDOW_RATE = {"traffic": 0.06, "safety": 0.05, "crowd": 0.03, "disaster": 0.03}
EVENT_KINDS = {
    "traffic": ("traffic_accident",),
    "safety": ("theft", "assault", "vandalism"),
    "crowd": ("crowd_crush", "severe_congestion"),
    "disaster": ("flooding", "heat_illness"),
}


def make_city(**kwargs) -> City:
    """Draw a synthetic city (see `make_city_and_oracle` for the arguments)."""
    return make_city_and_oracle(**kwargs)[0]


def make_city_and_oracle(
    n_districts: int = 25,
    days: int = 14,
    seed: int = 0,
    frame_every_hours: int = 3,
    frame_size: int = 16,
    districts: gpd.GeoDataFrame | None = None,
    spillover: float = 0.3,
) -> tuple[City, Oracle]:
    """Draw a synthetic city and the hidden truth behind it.

    Args:
        n_districts: Number of districts (Voronoi cells over central Tokyo).
        days: Length of the record in days, hourly sensor steps.
        seed: Seed of every random draw.
        frame_every_hours: Camera frame interval in districts with a camera.
        frame_size: Side of the square RGB frames in pixels.
        districts: Real district polygons (``district_id``, ``name``,
            ``geometry``) to draw the city on instead of Voronoi cells; its
            row count replaces ``n_districts``.
        spillover: Share of the neighbours' mean rate added to a district's own
            (risk spreads along the district graph; 0 switches it off).

    Returns:
        The `City` (districts, graph, sensors, frames, reports, events) and its
        `Oracle`: the hourly event rates the events were drawn from, which no
        model may read.
    """
    rng = np.random.default_rng(seed)
    if districts is not None:
        n_districts = len(districts)
    if n_districts < 2 or days < 1:
        raise ValueError("a city needs at least 2 districts and 1 day")
    if districts is None:
        districts = synthetic_districts(n_districts, rng)
    else:
        districts = add_synthetic_attributes(districts, rng)
    graph = build_district_graph(districts, extra_edges=_road_links(districts, rng))
    times = pd.date_range(CITY_START, periods=days * 24, freq="h")
    hidden = _hidden_factors(districts, graph, times, rng)
    sensors = _sensors(districts, times, hidden, rng)
    counts = _event_counts(districts, hidden, spillover, rng)
    events = _events(districts, times, counts, hidden, rng)
    frames, images = render_frames(districts, times, hidden, frame_every_hours, frame_size, rng)
    reports = write_reports(districts, times, hidden, events, rng)
    city = City(
        name=f"Synthetic Tokyo ({n_districts} districts, seed {seed})",
        districts=districts,
        graph=graph,
        sensors=sensors,
        frames=frames,
        images=images,
        reports=reports,
        events=events,
        timezone="Asia/Tokyo",
        meta={"generator": "kizashi.synthetic", "seed": seed, "days": days},
    )
    oracle = Oracle(
        district_ids=city.district_ids,
        times=times,
        rates={domain: hidden[f"rate_{domain}"].astype(np.float32) for domain in EVENT_KINDS},
        factors={
            name: np.asarray(hidden[name], dtype=np.float32)
            for name in (
                "rain",
                "temperature",
                "crowd",
                "festival",
                "announced",
                "traffic",
                "flood_rate",
            )
        },
    )
    return city, oracle


def _hidden_factors(districts, graph, times, rng) -> dict[str, np.ndarray]:
    """The latent state of the city, one (district, hour) array per factor."""
    n, steps = len(districts), len(times)
    centroids = districts.to_crs(METRIC_CRS).geometry.centroid
    x, y = centroids.x.to_numpy() / 1000, centroids.y.to_numpy() / 1000  # km
    hour = local_hour(times)
    days = steps / 24

    rain = np.zeros((n, steps))
    for _ in range(rng.poisson(0.5 * days) + 1):
        start, length = rng.integers(0, steps), rng.integers(3, 19)
        cx, cy = rng.uniform(x.min(), x.max()), rng.uniform(y.min(), y.max())
        reach = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 4.0**2))
        profile = rng.lognormal(1.2, 0.6) * np.sin(np.linspace(0.2, np.pi - 0.2, length))
        end = min(start + length, steps)
        rain[:, start:end] += reach[:, None] * profile[None, : end - start]
    rain *= rng.lognormal(0, 0.25, size=rain.shape)

    daily = np.repeat(np.cumsum(rng.normal(0, 1.2, int(np.ceil(days))))[: int(np.ceil(days))], 24)
    diurnal = 4.5 * np.sin((hour - 9) / 24 * 2 * np.pi)
    heat = np.zeros(steps)
    for _ in range(rng.poisson(days / 10) + 1):
        start = rng.integers(0, steps)
        heat[start : start + rng.integers(48, 120)] += rng.uniform(4, 7)
    temperature = (
        26 + diurnal[None, :] + daily[None, :steps] + heat[None, :] + np.zeros((n, 1))
    ) - 1.5 * np.minimum(rain, 4)

    commercial = districts["commercial_share"].to_numpy()
    evening = np.exp(-((hour - 19) ** 2) / 8.0)
    crowd = 0.3 + commercial[:, None] * (0.6 + evening[None, :])
    crowd = crowd + _ar1(rng, (n, steps), 0.9, 0.15)
    festival = np.zeros((n, steps))
    announced = np.zeros((n, steps))
    preparing = np.zeros((n, steps))
    for _ in range(rng.poisson(0.3 * n * days / 7) + 1):
        district = rng.integers(0, n)
        day = rng.integers(0, int(days))
        start = day * 24 + (17 - UTC_OFFSET_HOURS) % 24 + rng.integers(-2, 3)
        if not 0 <= start < steps:
            continue
        ramp = np.clip(np.arange(-3, 6) / 3 + 1, 0, 1) * rng.uniform(1.5, 3.0)
        lo, hi = max(start - 3, 0), min(start + 6, steps)
        festival[district, lo:hi] = np.maximum(festival[district, lo:hi], ramp[: hi - lo])
        announced[district, start] = 1.0
        preparing[district, max(start - PREPARATION_HOURS, 0) : hi] = 1.0
    crowd = np.clip(crowd + festival, 0, None)

    traffic_profile = 0.4 + np.exp(-((hour - 8) ** 2) / 3) + np.exp(-((hour - 18) ** 2) / 4)
    weekday = np.where(times.day_of_week.to_numpy() >= 5, 0.7, 1.0)
    road = districts["road_density"].to_numpy()
    traffic = road[:, None] * (traffic_profile * weekday)[None, :] * (1 - 0.15 * (rain > 1))
    traffic *= rng.lognormal(0, 0.15, size=traffic.shape)

    night = ((hour >= 22) | (hour <= 3)).astype(float)
    return {
        "rain": rain,
        "temperature": temperature,
        "crowd": crowd,
        "festival": festival,
        "announced": announced,
        "preparing": preparing,
        "traffic": traffic,
        "night": np.broadcast_to(night, (n, steps)),
        "adjacency": _row_normalised_adjacency(graph, n),
    }


def _ar1(rng, shape, phi: float, scale: float) -> np.ndarray:
    noise = rng.normal(0, scale, size=shape)
    out = np.empty(shape)
    out[:, 0] = noise[:, 0]
    for step in range(1, shape[1]):
        out[:, step] = phi * out[:, step - 1] + noise[:, step]
    return out


def _row_normalised_adjacency(graph, n: int) -> np.ndarray:
    adjacency = np.zeros((n, n))
    source, target = graph.edge_index.numpy()
    adjacency[source, target] = 1.0
    degree = adjacency.sum(axis=1, keepdims=True)
    return np.divide(adjacency, degree, out=np.zeros_like(adjacency), where=degree > 0)


def _road_links(districts, rng, share: float = 0.15) -> list[tuple[str, str, float]]:
    """Arterial roads: weighted links from busy districts to the next-nearest busy ones.

    They join districts that do not touch, so traffic risk can travel along them.
    """
    centroids = districts.to_crs(METRIC_CRS).geometry.centroid
    points = np.column_stack([centroids.x, centroids.y])
    busy = np.flatnonzero(
        districts["road_density"].to_numpy()
        >= np.quantile(districts["road_density"].to_numpy(), 1 - 2 * share)
    )
    ids = districts["district_id"].to_numpy()
    links = []
    for index in busy:
        distance = np.hypot(*(points[busy] - points[index]).T)
        order = busy[np.argsort(distance)]
        if len(order) > 2:
            target = order[rng.integers(1, min(4, len(order)))]
            links.append((ids[index], ids[target], 0.5))
    return links


def _sensors(districts, times, hidden, rng) -> xr.Dataset:
    """Sensor channels observed from the hidden state, with outages as NaN."""
    n, steps = hidden["rain"].shape
    has_counter = districts["has_pedestrian_counter"].to_numpy()
    population = districts["population"].to_numpy()
    pedestrians = (population[:, None] / 40) * hidden["crowd"] * rng.lognormal(0, 0.2, (n, steps))
    pedestrians[~has_counter] = np.nan
    rain_6h = _rain_6h(hidden["rain"])
    water_level = 5 + 12 * rain_6h * _lowness(districts) + rng.normal(0, 1.0, (n, steps))
    water_level[~districts["has_water_gauge"].to_numpy()] = np.nan
    channels = {
        "traffic_volume": 900 * hidden["traffic"],
        "pedestrian_count": pedestrians,
        "rainfall": np.round(np.clip(hidden["rain"] + rng.normal(0, 0.05, (n, steps)), 0, None), 1),
        "temperature": hidden["temperature"] + rng.normal(0, 0.3, (n, steps)),
        "humidity": np.clip(
            70 - 1.5 * (hidden["temperature"] - 26) + 8 * np.minimum(hidden["rain"], 3), 20, 100
        ),
        "noise_db": 45 + 8 * hidden["traffic"] + rng.normal(0, 1, (n, steps)),
        "water_level_cm": np.clip(water_level, 0, None),
    }
    outage = rng.random((n, steps // 24 + 1)) < 0.03
    outage = np.repeat(outage, 24, axis=1)[:, :steps]
    # Older sensor networks report less often: every 2 or 3 hours in some districts.
    interval = rng.choice(SENSOR_INTERVALS_HOURS, size=n, p=SENSOR_INTERVAL_SHARES)
    off_schedule = (np.arange(steps)[None, :] % interval[:, None]) != 0
    outage = outage | off_schedule
    data_vars = {}
    for name, values in channels.items():
        values = np.where(outage, np.nan, values).astype(np.float32)
        data_vars[name] = (("district", "time"), values)
    return xr.Dataset(
        data_vars,
        coords={
            "district": districts["district_id"].to_numpy().astype(str),
            "time": times.tz_convert(None).to_numpy(),
        },
        attrs={"time_zone_of_time_coordinate": "UTC"},
    )


def _event_counts(districts, hidden, spillover: float, rng) -> dict[str, np.ndarray]:
    """Hourly event counts per domain, drawn from rates the hidden factors set."""
    lowness = _lowness(districts)
    nightlife = districts["nightlife"].to_numpy()[:, None]
    rain_6h = _rain_6h(hidden["rain"])
    flood = _unit_mean(np.square(rain_6h) * lowness**2)
    heat = _unit_mean(np.square(np.clip(hidden["temperature"] - 31, 0, None)))
    rates = {
        "traffic": hidden["traffic"] * (1 + 1.5 * np.minimum(hidden["rain"], 5)),
        "safety": 0.2 + 3 * nightlife * hidden["night"] + 0.6 * hidden["crowd"],
        "crowd": np.square(np.clip(hidden["crowd"] - 1.0, 0, None)) + 0.02,
        "disaster": flood + heat,
    }
    hidden["flood_share"] = np.divide(
        flood, flood + heat, out=np.zeros_like(flood), where=flood + heat > 0
    )
    adjacency = hidden["adjacency"]
    counts = {}
    for domain, rate in rates.items():
        rate = rate + spillover * adjacency @ rate
        rate = rate * _scale_to_window_rate(rate, TARGET_WINDOW_RATE[domain])
        hidden[f"rate_{domain}"] = rate
        counts[domain] = rng.poisson(rate)
    hidden["flood_rate"] = hidden["rate_disaster"] * hidden["flood_share"]
    return counts


def _rain_6h(rain: np.ndarray) -> np.ndarray:
    """Rain summed over each hour and the 5 before it: what pools and floods."""
    return pd.DataFrame(rain.T).rolling(6, min_periods=1).sum().to_numpy().T


def _lowness(districts) -> np.ndarray:
    """How low each district lies, 0 (20 m and up) to 1 (sea level), as a column."""
    return np.clip((20 - districts["elevation_m"].to_numpy()) / 20, 0, 1)[:, None]


def _unit_mean(values: np.ndarray) -> np.ndarray:
    """Scale to mean 1 (so two causes weigh alike), leaving all-zero input alone."""
    mean = values.mean()
    return values / mean if mean > 0 else values


def _scale_to_window_rate(rate: np.ndarray, target: float, hours: int = 6) -> float:
    """The factor that makes ``target`` the share of windows with at least one event."""
    windows = rate[:, : rate.shape[1] // hours * hours].reshape(rate.shape[0], -1, hours).sum(-1)
    low, high = 0.0, 1.0
    while np.mean(1 - np.exp(-high * windows)) < target:
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        if np.mean(1 - np.exp(-middle * windows)) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _events(districts, times, counts, hidden, rng) -> pd.DataFrame:
    """One row per event, at a random minute of the hour it fell in."""
    ids = districts["district_id"].to_numpy()
    rows = []
    for domain, count in counts.items():
        district, step = np.nonzero(count)
        repeat = count[district, step]
        district, step = np.repeat(district, repeat), np.repeat(step, repeat)
        minutes = rng.integers(0, 60, size=len(step))
        kinds = rng.choice(EVENT_KINDS[domain], size=len(step))
        if domain == "disaster":
            flood = rng.random(len(step)) < hidden["flood_share"][district, step]
            kinds = np.where(flood, "flooding", "heat_illness")
        rows.append(
            pd.DataFrame(
                {
                    "district_id": ids[district],
                    "timestamp": times[step] + pd.to_timedelta(minutes, unit="m"),
                    "domain": domain,
                    "kind": kinds,
                }
            )
        )
    events = pd.concat(rows, ignore_index=True)
    return events.sort_values(["timestamp", "district_id"], ignore_index=True)
