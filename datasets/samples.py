"""(district, window) samples: what a model sees before a window, and what follows.

A sample's inputs come from a look-back context ``[start - lookback, start)``:
the sensor series at their own time stamps, the latest camera frame, the text
reports, and the district's place in the public graph. Its targets are event
counts per domain in the horizon after ``start``, computed by the caller (the
domains know which events count). Any modality may be missing; masks say which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy import sparse
from torch.utils.data import Dataset

from datasets.city import City

SAMPLE_KEYS = (
    "district",
    "series",
    "series_time",
    "series_mask",
    "image",
    "image_mask",
    "text",
    "text_time",
    "text_mask",
    "neighbours",
    "clock",
    "targets",
    "target_mask",
)
# Fixed affine scalings for well-known channels; any other channel gets signed log1p.
CHANNEL_SCALING = {"temperature": (25.0, 5.0), "humidity": (60.0, 20.0), "noise_db": (50.0, 10.0)}
STATIC_EXCLUDE = {"district_id", "name", "geometry"}


RECENT_HOURS = 6.0  # the "latest hours" a sensor summary singles out: rain now floods soon
SUMMARY_STATS = 6  # statistics per channel in `series_summary`


def series_summary(
    series: torch.Tensor, series_time: torch.Tensor, series_mask: torch.Tensor
) -> torch.Tensor:
    """Per channel: mean, max, min, latest value, mean of the latest hours, share observed.

    Statistics over the observed readings only, at their real time stamps, so any
    sampling interval gives the same summary; a channel with no reading gives 0s.

    Shapes:
        series, series_mask: ``(B, L, C)``; series_time: ``(B, L)`` hours (<= 0).
        output: ``(B, SUMMARY_STATS * C)``.
    """
    observed = series_mask.float()
    count = observed.sum(1)
    seen = count > 0
    mean = (series * observed).sum(1) / count.clamp(min=1.0)
    highest = torch.where(series_mask, series, -torch.inf).amax(1)
    lowest = torch.where(series_mask, series, torch.inf).amin(1)
    steps = torch.arange(series.shape[1], device=series.device).view(1, -1, 1)
    latest_step = torch.where(series_mask, steps, -1).amax(1).clamp(min=0)
    latest = series.gather(1, latest_step.unsqueeze(1)).squeeze(1)
    recent = observed * (series_time >= -RECENT_HOURS).unsqueeze(-1).float()
    recent_mean = (series * recent).sum(1) / recent.sum(1).clamp(min=1.0)
    share = count / series.shape[1]
    stats = [mean, highest, lowest, latest, recent_mean]
    stats = [torch.where(seen, value, torch.zeros_like(value)) for value in stats]
    return torch.cat([*stats, share], dim=-1)


def neighbour_width(text_dim: int, n_channels: int) -> int:
    """Width of a neighbour context: report embedding, log report count, sensor summary, share."""
    return text_dim + 1 + SUMMARY_STATS * n_channels + 1


def _edges(graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    edges = graph.edge_index.numpy()
    weights = getattr(graph, "edge_weight", None)
    weights = np.ones(edges.shape[1]) if weights is None else weights.numpy()
    return edges[0], edges[1], weights.astype(np.float64)


def neighbour_sums(
    graph, rows: np.ndarray, summaries: np.ndarray, held: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What districts ``rows`` tell the districts next to them, window by window.

    ``summaries`` are `RiskSamples.district_summaries` of ``rows`` (district-major,
    ``(len(rows) * W, F)``); ``held`` ``(len(rows), W)`` weighs each (0: the
    district's data of that window are not here). Returns the ``targets`` (graph
    rows with a neighbour among ``rows``) and for each target ``d``:
    ``sums[d, w]`` = Σ over neighbours ``n`` of weight(n→d) · held(n, w) ·
    summary(n, w), and ``reach[d, w]`` = Σ weight(n→d) · held(n, w). Sums over
    disjoint sets of districts add up, so sites can pool theirs.
    """
    source, target, weights = _edges(graph)
    position = np.full(int(graph.num_nodes), -1)
    position[np.asarray(rows)] = np.arange(len(rows))
    kept = position[source] >= 0
    targets, target_of = np.unique(target[kept], return_inverse=True)
    adjacency = sparse.csr_matrix(
        (weights[kept], (target_of, position[source[kept]])), shape=(len(targets), len(rows))
    )
    n_windows, features = held.shape[1], summaries.shape[1]
    weighted = summaries.reshape(len(rows), n_windows, features) * held[:, :, None]
    sums = (adjacency @ weighted.reshape(len(rows), -1)).reshape(len(targets), n_windows, features)
    reach = np.asarray(adjacency @ held)
    return targets, sums.astype(np.float32), reach.astype(np.float32)


def neighbour_context(graph, rows: np.ndarray, sums: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """The neighbour context of districts ``rows`` from their `neighbour_sums`.

    Per sample (district-major): the weighted mean of the neighbours' summaries
    and the share of the neighbours' weight behind it; ``(len(rows) * W, F + 1)``.
    """
    _, target, weights = _edges(graph)
    degree = np.bincount(target, weights=weights, minlength=int(graph.num_nodes))[rows]
    mean = sums / np.maximum(reach, 1e-9)[:, :, None]
    share = np.divide(reach, degree[:, None], out=np.zeros_like(reach), where=degree[:, None] > 0)
    context = np.concatenate([mean, share[:, :, None]], axis=2)
    return context.reshape(-1, context.shape[2]).astype(np.float32)


def window_starts(city: City, stride_hours: int, lookback_hours: int, horizon_hours: int):
    """Window starts with a full look-back before and a full horizon after them."""
    first = city.start + pd.Timedelta(hours=lookback_hours)
    last = city.end - pd.Timedelta(hours=horizon_hours)
    return pd.date_range(first, last, freq=f"{stride_hours}h", tz="UTC")


def scale_channel(name: str, values: np.ndarray) -> np.ndarray:
    """Bring one sensor channel to a scale near [-3, 3], the same at every site."""
    if name in CHANNEL_SCALING:
        centre, spread = CHANNEL_SCALING[name]
        return (values - centre) / spread
    return np.sign(values) * np.log1p(np.abs(values))


def static_features(city: City) -> np.ndarray:
    """Public district attributes as a z-scored float matrix ``(n_districts, F)``."""
    frame = pd.DataFrame(city.districts.drop(columns=list(STATIC_EXCLUDE & set(city.districts))))
    numeric = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    values = numeric.to_numpy()
    mean = np.nanmean(values, axis=0) if len(values) else 0.0
    std = np.nanstd(values, axis=0) if len(values) else 1.0
    values = (values - mean) / np.where(std > 0, std, 1.0)
    return np.nan_to_num(values).astype(np.float32)


def local_clock(starts: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """Where a window falls in the city's day and week: ``(n, 4)`` sin/cos pairs.

    Risk follows the local clock (rush hours, nights out, weekends), which the
    relative time stamps of the context cannot tell.
    """
    local = pd.DatetimeIndex(starts).tz_convert(timezone)
    hour = (local.hour + local.minute / 60).to_numpy() / 24 * 2 * np.pi
    day = (local.day_of_week.to_numpy() + hour / (2 * np.pi)) / 7 * 2 * np.pi
    return np.stack([np.sin(hour), np.cos(hour), np.sin(day), np.cos(day)], 1).astype(np.float32)


def temporal_split(
    starts: pd.DatetimeIndex, horizon_hours: int, fractions: tuple[float, float] = (0.6, 0.2)
) -> dict[str, np.ndarray]:
    """Boolean masks over windows for train, validation and test, in time order.

    Windows whose horizon would reach into the next part are dropped, so no event
    is both a training target and a test target.
    """
    span = starts[-1] - starts[0]
    cut_val = starts[0] + span * fractions[0]
    cut_test = starts[0] + span * (fractions[0] + fractions[1])
    horizon = pd.Timedelta(hours=horizon_hours)
    return {
        "train": np.asarray(starts + horizon <= cut_val),
        "validation": np.asarray((starts >= cut_val) & (starts + horizon <= cut_test)),
        "test": np.asarray(starts >= cut_test),
    }


class RiskSamples(Dataset):
    """All (district, window) samples of a city, as dict samples.

    Args:
        city: The city (or an edge site's share of it).
        starts: Window starts (UTC), e.g. from `window_starts`.
        targets: Per domain, counts ``(n_districts, n_windows)``.
        embed_texts: Maps report texts to vectors ``(n, dim)``; the frozen text
            encoder of the model, kept outside the data layer.
        lookback_hours: Length of the context before each window.
        districts: Row indices of the districts to keep (an edge site's own);
            all when None.
        max_reports: The latest reports of a context kept per sample; each is
            one token for the text encoder, with its age in hours.
    """

    def __init__(
        self,
        city: City,
        starts: pd.DatetimeIndex,
        targets: dict[str, np.ndarray],
        embed_texts: Callable[[list[str]], np.ndarray],
        lookback_hours: int = 24,
        districts: np.ndarray | None = None,
        max_reports: int = 8,
    ) -> None:
        rows = np.arange(len(city.districts)) if districts is None else np.asarray(districts)
        self.domains = list(targets)
        self.starts = pd.DatetimeIndex(starts)
        grid = pd.DatetimeIndex(city.sensors["time"].values).tz_localize("UTC")
        step_hours = (grid[1] - grid[0]) / pd.Timedelta(hours=1) if len(grid) > 1 else 1.0
        lookback_steps = max(int(round(lookback_hours / step_hours)), 1)
        positions = grid.get_indexer(self.starts)
        if (positions < lookback_steps).any():
            raise ValueError("every window start must lie on the sensor grid after the look-back")
        district_of, window_of = np.meshgrid(rows, np.arange(len(starts)), indexing="ij")
        self.district = district_of.ravel()
        self.window = window_of.ravel()
        self._series(city, rows, positions, lookback_steps, step_hours)
        self._images(city, rows, lookback_hours)
        self._texts(city, rows, lookback_hours, embed_texts, max_reports)
        self._neighbours(city, rows)
        self.clock = local_clock(self.starts, city.timezone)[self.window]
        stacked = np.stack([targets[name][rows] for name in self.domains], axis=-1)
        self.targets = stacked.reshape(-1, len(self.domains)).astype(np.float32)
        self.target_mask = np.ones_like(self.targets, dtype=bool)

    def _series(self, city, rows, positions, lookback_steps, step_hours) -> None:
        channels = list(city.sensors.data_vars)
        position = {name: i for i, name in enumerate(city.sensors["district"].values.astype(str))}
        ids = np.array(city.district_ids)[rows]
        found = np.array([name in position for name in ids], dtype=bool)
        take = np.array([position.get(name, 0) for name in ids], dtype=np.int64)
        values = np.stack(
            [scale_channel(name, city.sensors[name].values[take]) for name in channels], axis=-1
        ).astype(np.float32)
        values[~found] = np.nan  # districts without sensors: every reading missing
        windows = sliding_window_view(values, lookback_steps, axis=1)  # (d, T-L+1, C, L)
        windows = windows[:, positions - lookback_steps].transpose(0, 1, 3, 2)
        series = windows.reshape(-1, lookback_steps, len(channels))
        self.series_mask = ~np.isnan(series)
        self.series = np.nan_to_num(series)
        offsets = (np.arange(lookback_steps) - lookback_steps) * step_hours
        self.series_time = np.broadcast_to(offsets.astype(np.float32), series.shape[:2])
        self.channels = channels

    def _images(self, city, rows, lookback_hours) -> None:
        n = len(self.district)
        size = city.frames.shape[1:3] if len(city.frames) else (16, 16)
        self.frame_index = np.full(n, -1, dtype=np.int64)
        ids = np.array(city.district_ids)
        for position, row in enumerate(rows):
            mine = city.images[city.images["district_id"] == ids[row]].sort_values("timestamp")
            if mine.empty:
                continue
            stamps = pd.DatetimeIndex(mine["timestamp"]).as_unit("ns").asi8
            starts = self.starts.as_unit("ns").asi8
            latest = np.searchsorted(stamps, starts, side="left") - 1
            lookback = pd.Timedelta(hours=lookback_hours).value
            fresh = (latest >= 0) & (stamps[np.maximum(latest, 0)] >= starts - lookback)
            picked = np.where(fresh, mine["frame"].to_numpy()[np.maximum(latest, 0)], -1)
            self.frame_index[position * len(starts) : (position + 1) * len(starts)] = picked
        self.frames = city.frames if len(city.frames) else np.zeros((1, *size, 3), np.uint8)

    def _texts(self, city, rows, lookback_hours, embed_texts, max_reports) -> None:
        """Index the ``max_reports`` latest reports of each context; embed each report once."""
        ids = np.array(city.district_ids)
        reports = city.reports
        embeddings = np.asarray(embed_texts(reports["text"].tolist()), dtype=np.float32)
        self.text_dim = embeddings.shape[1] if embeddings.ndim == 2 else 0
        # One zero row at the end: index -1 (no report) gathers zeros.
        self.report_embeddings = np.vstack(
            [embeddings.reshape(len(reports), self.text_dim), np.zeros((1, self.text_dim))]
        ).astype(np.float32)
        n = len(self.district)
        self.report_index = np.full((n, max_reports), -1, dtype=np.int64)
        self.report_time = np.zeros((n, max_reports), dtype=np.float32)
        self.text_count = np.zeros(n, dtype=np.int64)
        starts = self.starts.as_unit("ns").asi8
        lookback = pd.Timedelta(hours=lookback_hours).value
        hour = pd.Timedelta(hours=1).value
        all_stamps = pd.DatetimeIndex(reports["timestamp"]).as_unit("ns").asi8
        district_of_report = reports["district_id"].to_numpy()
        for position, row in enumerate(rows):
            mine = np.flatnonzero(district_of_report == ids[row])
            if len(mine) == 0:
                continue
            order = np.argsort(all_stamps[mine], kind="stable")
            stamps, mine = all_stamps[mine][order], mine[order]
            lo = np.searchsorted(stamps, starts - lookback, side="left")
            hi = np.searchsorted(stamps, starts, side="left")
            block = slice(position * len(starts), (position + 1) * len(starts))
            self.text_count[block] = hi - lo
            slots = hi[:, None] - max_reports + np.arange(max_reports)[None, :]
            valid = slots >= lo[:, None]
            safe = np.clip(slots, 0, len(mine) - 1)
            self.report_index[block] = np.where(valid, mine[safe], -1)
            ages = (stamps[safe] - starts[:, None]) / hour
            self.report_time[block] = np.where(valid, ages, 0.0)

    def _neighbours(self, city, rows) -> None:
        """What the neighbours held in the same look-back: their reports and readings.

        Risk spills over district borders (a festival next door fills the streets
        here) and weather does not stop at them (a neighbour's rain gauge speaks
        for a district whose own is down), so each sample carries the
        edge-weighted mean of its neighbours' `district_summaries` and the share
        of its neighbours whose data are in this sample set. Only the districts
        of this sample set count: an edge site sees its own districts' data,
        never another site's (`fedcore.federation.neighbour_exchange` pools them).
        """
        n_rows, n_windows = len(rows), len(self.starts)
        held = np.ones((n_rows, n_windows), dtype=np.float32)
        targets, sums, reach = neighbour_sums(city.graph, rows, self.district_summaries(), held)
        position = np.full(len(city.districts), -1)
        position[rows] = np.arange(n_rows)
        mine = position[targets] >= 0
        own_sums = np.zeros((n_rows, n_windows, sums.shape[2]), dtype=np.float32)
        own_reach = np.zeros((n_rows, n_windows), dtype=np.float32)
        own_sums[position[targets[mine]]] = sums[mine]
        own_reach[position[targets[mine]]] = reach[mine]
        self.neighbours = neighbour_context(city.graph, rows, own_sums, own_reach)

    def district_summaries(self) -> np.ndarray:
        """Per sample: pooled report embedding, ``log1p`` report count, sensor summary.

        What a district tells its neighbours about one look-back; ``(n, F)``.
        """
        summary = series_summary(
            torch.from_numpy(self.series),
            torch.from_numpy(np.ascontiguousarray(self.series_time)),
            torch.from_numpy(self.series_mask),
        ).numpy()
        return np.concatenate(
            [self.pooled_text(), np.log1p(self.text_count)[:, None], summary], axis=1
        ).astype(np.float32)

    @property
    def neighbour_dim(self) -> int:
        """Width of a sample's neighbour context (see `neighbour_width`)."""
        return neighbour_width(self.text_dim, len(self.channels))

    def pooled_text(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Mean embedding of each sample's indexed reports ``(n, text_dim)`` (zeros if none)."""
        index = self.report_index if indices is None else self.report_index[indices]
        gathered = self.report_embeddings[index]
        count = (index >= 0).sum(axis=1, keepdims=True)
        return gathered.sum(axis=1) / np.maximum(count, 1)

    def __len__(self) -> int:
        """Number of (district, window) samples."""
        return len(self.district)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One sample as a dict with the keys of `SAMPLE_KEYS`."""
        return self.batch(np.array([index]), squeeze=True)

    def batch(self, indices: np.ndarray, squeeze: bool = False) -> dict[str, torch.Tensor]:
        """Samples ``indices`` stacked along a first batch dimension."""
        frame = self.frame_index[indices]
        images = self.frames[np.maximum(frame, 0)].astype(np.float32) / 255.0
        out = {
            "district": torch.from_numpy(self.district[indices]),
            "series": torch.from_numpy(self.series[indices]),
            "series_time": torch.from_numpy(np.ascontiguousarray(self.series_time[indices])),
            "series_mask": torch.from_numpy(self.series_mask[indices]),
            "image": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            "image_mask": torch.from_numpy(frame >= 0),
            "text": torch.from_numpy(self.report_embeddings[self.report_index[indices]]),
            "text_time": torch.from_numpy(self.report_time[indices]),
            "text_mask": torch.from_numpy(self.report_index[indices] >= 0),
            "neighbours": torch.from_numpy(self.neighbours[indices]),
            "clock": torch.from_numpy(self.clock[indices]),
            "targets": torch.from_numpy(self.targets[indices]),
            "target_mask": torch.from_numpy(self.target_mask[indices]),
        }
        if squeeze:
            out = {key: value[0] for key, value in out.items()}
        return out

    def batches(
        self, batch_size: int, indices: np.ndarray | None = None, seed: int | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches over ``indices`` (all by default), shuffled when a seed is given."""
        order = np.arange(len(self)) if indices is None else np.asarray(indices)
        if seed is not None:
            order = np.random.default_rng(seed).permutation(order)
        for begin in range(0, len(order), batch_size):
            yield self.batch(order[begin : begin + batch_size])

    def split_indices(self, split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sample indices of each part of a window split (see `temporal_split`)."""
        return {name: np.flatnonzero(mask[self.window]) for name, mask in split.items()}


def collate_samples(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack dict samples (from `RiskSamples.__getitem__`) into one batch."""
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
