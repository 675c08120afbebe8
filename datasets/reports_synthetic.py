"""Synthetic text reports: announcements, incident write-ups and everyday noise.

Festival announcements are the only trace of a coming crowd before it forms, so
text carries a cause the other modalities only see late. Incident write-ups
follow some events with a delay; everyday reports add realistic noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ANNOUNCEMENTS = (
    "The ward office announces a {what} near {name} this evening; thousands are expected.",
    "Reminder: {what} at {name} starts tonight, organisers expect large crowds.",
    "Big {what} planned in {name} later today, expect heavy foot traffic around the station.",
    "Tonight's {what} in {name} is sold out; extra staff requested for crowd control.",
)
FESTIVALS = ("summer festival", "fireworks display", "concert", "street parade", "football match")
INCIDENTS = {
    "traffic_accident": ("police", "Collision between a car and a cyclist reported in {name}."),
    "theft": ("police", "Bag snatching reported to police near the {name} shopping street."),
    "assault": ("police", "Police responded to a fight outside a bar in {name}."),
    "vandalism": ("police", "Vandalism to parked bicycles reported in {name}."),
    "crowd_crush": ("transit", "Platform at {name} station closed briefly due to overcrowding."),
    "severe_congestion": ("transit", "Severe congestion at {name} station exits, staff deployed."),
    "flooding": ("fire", "Fire department pumping water from a flooded underpass in {name}."),
    "heat_illness": ("fire", "Ambulance called for a heat-stroke case in {name}."),
}
EVERYDAY = (
    ("citizen", "Street light out on the main road in {name}."),
    ("citizen", "Lost cat seen near the park in {name}, please call the owner."),
    ("transit", "Bus stop in {name} moved temporarily for road works."),
    ("citizen", "Noise complaint about construction work in {name}."),
    ("police", "Routine patrol in {name}, nothing to report."),
    ("citizen", "New bakery opened on the corner in {name}, long queue this morning."),
    ("transit", "Escalator maintenance at {name} station until Friday."),
)


def write_reports(districts, times: pd.DatetimeIndex, hidden: dict, events: pd.DataFrame, rng):
    """All reports of the city, sorted by time.

    Returns:
        Frame with ``district_id``, ``timestamp`` (UTC), ``source`` and ``text``.
    """
    ids = districts["district_id"].to_numpy()
    names = districts["name"].to_numpy()
    rows: list[tuple] = []
    for district, step in zip(*np.nonzero(hidden["announced"]), strict=True):
        lead = pd.Timedelta(hours=float(rng.uniform(2, 12)))
        template = ANNOUNCEMENTS[rng.integers(len(ANNOUNCEMENTS))]
        text = template.format(what=rng.choice(FESTIVALS), name=names[district])
        source = "ward_office" if rng.random() < 0.6 else "citizen"
        rows.append((ids[district], times[step] - lead, source, text))
    row_of = {district: row for row, district in enumerate(ids)}
    for event in events.itertuples():
        if rng.random() < 0.6:
            source, template = INCIDENTS[event.kind]
            delay = pd.Timedelta(minutes=int(rng.integers(20, 120)))
            name = names[row_of[event.district_id]]
            rows.append(
                (event.district_id, event.timestamp + delay, source, template.format(name=name))
            )
    n_everyday = rng.poisson(0.5 * len(ids) * len(times) / 24)
    picks = rng.integers(0, len(EVERYDAY), n_everyday)
    where = rng.integers(0, len(ids), n_everyday)
    when = times[0] + pd.to_timedelta(rng.uniform(0, len(times), n_everyday), unit="h")
    for pick, district, stamp in zip(picks, where, when, strict=True):
        source, template = EVERYDAY[pick]
        rows.append((ids[district], stamp, source, template.format(name=names[district])))
    reports = pd.DataFrame(rows, columns=["district_id", "timestamp", "source", "text"])
    reports["timestamp"] = pd.to_datetime(reports["timestamp"], utc=True).dt.floor("s")
    end = times[-1] + pd.Timedelta(hours=1)
    reports = reports[(reports["timestamp"] >= times[0]) & (reports["timestamp"] < end)]
    return reports.sort_values(["timestamp", "district_id"], ignore_index=True)
