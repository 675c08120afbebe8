"""Write the tiny import fixtures: good and malformed files in every format we read.

Run from anywhere: ``python tests/data/importers/make_files.py [OUT_DIR]`` (the
default is this script's folder). The files mimic a real ward office hand-off
for "Kita City": six wards in JGD2011 / Japan Plane Rectangular CS IX
(EPSG:6677), hourly sensor readings, a few camera images, citizen reports and
incident logs. The malformed files under ``bad/`` each break exactly one rule.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image
from shapely.geometry import LineString, Polygon, box

WARDS = [
    ("KITA-01", "Akabane", 41200),
    ("KITA-02", "Ukima", 28900),
    ("KITA-03", "Kirigaoka", 17400),
    ("KITA-04", "Oji", 36100),
    ("KITA-05", "Jujo", 30500),
    ("KITA-06", "Tabata", 25800),
]
PLANE_CRS = "EPSG:6677"  # JGD2011 / Japan Plane Rectangular CS IX (Tokyo)
ORIGIN_X, ORIGIN_Y, CELL_M = -10500.0, -29000.0, 1500.0
START = pd.Timestamp("2026-06-01T00:00:00+09:00")
ZIP_TIME = (2026, 6, 1, 0, 0, 0)


def wards_in_plane_crs() -> gpd.GeoDataFrame:
    """Six square wards, three per row, two rows, in metres."""
    cells = []
    for i in range(len(WARDS)):
        x = ORIGIN_X + (i % 3) * CELL_M
        y = ORIGIN_Y - (i // 3) * CELL_M
        cells.append(box(x, y - CELL_M, x + CELL_M, y))
    return gpd.GeoDataFrame(
        {
            "district_id": [w[0] for w in WARDS],
            "name": [w[1] for w in WARDS],
            "population": [w[2] for w in WARDS],
        },
        geometry=cells,
        crs=PLANE_CRS,
    )


def ward_centre(wards_lonlat: gpd.GeoDataFrame, row: int) -> tuple[float, float]:
    """(lat, lon) of a point inside ward ``row``, off its centre."""
    point = wards_lonlat.geometry.iloc[row].representative_point()
    return round(point.y, 6), round(point.x, 6)


def write_shapefile_zip(frame: gpd.GeoDataFrame, path: Path, with_prj: bool = True) -> None:
    """Zip a Shapefile's parts, as GIS exports ship them (fixed times: same bytes each run)."""
    with tempfile.TemporaryDirectory() as tmp:
        frame.rename(columns={"district_id": "district_i"}).to_file(Path(tmp) / "wards.shp")
        fix_dbf_date(Path(tmp) / "wards.dbf")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in sorted(Path(tmp).iterdir()):
                if part.suffix == ".prj" and not with_prj:
                    continue
                info = zipfile.ZipInfo(f"wards{part.suffix}", date_time=ZIP_TIME)
                archive.writestr(info, part.read_bytes(), zipfile.ZIP_DEFLATED)


def fix_dbf_date(path: Path) -> None:
    """Set the dBASE header's last-update date (bytes 1-3) to ``ZIP_TIME``'s day.

    The writer stamps the day it ran there, so without this the fixtures' bytes
    change every day and the generator test fails from the day after they were made.
    """
    data = bytearray(path.read_bytes())
    data[1:4] = bytes([ZIP_TIME[0] - 1900, ZIP_TIME[1], ZIP_TIME[2]])
    path.write_bytes(bytes(data))


def write_geopackage(frame: gpd.GeoDataFrame, path: Path) -> None:
    """A GeoPackage with small pages (a few kilobytes), the same bytes on every run.

    GDAL's file has a change time and a change counter that vary from run to run;
    ``VACUUM INTO`` copies it into a fresh file with the counter at 1.
    """
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.gpkg"
        frame.to_file(raw, layer="wards", driver="GPKG", SPATIAL_INDEX="NO")
        connection = sqlite3.connect(raw)
        try:
            connection.execute("UPDATE gpkg_contents SET last_change = '2026-06-01T00:00:00.000Z'")
            connection.commit()
            connection.execute("PRAGMA page_size=512")
            connection.execute("VACUUM INTO ?", (str(path),))
        finally:
            connection.close()


def gridded_sensors(ids: list[str], steps: int, every_hours: int, seed: int) -> xr.Dataset:
    """Hourly-style channels over (district, time); one reading is a NaN gap."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(START.tz_convert(None), periods=steps, freq=f"{every_hours}h")
    shape = (len(ids), steps)
    traffic = rng.uniform(200, 900, shape).round(1)
    traffic[0, 2] = np.nan
    return xr.Dataset(
        {
            "traffic_volume": (("district", "time"), traffic),
            "rainfall": (("district", "time"), rng.exponential(0.5, shape).round(1)),
            "temperature": (("district", "time"), rng.normal(26, 1.5, shape).round(2)),
        },
        coords={"district": np.array(ids), "time": times.to_numpy()},
        attrs={"title": "Kita City ward sensors", "source": "synthetic fixture"},
    )


def write_netcdf(sensors: xr.Dataset, path: Path) -> None:
    """NetCDF-4 with CF time units in Japan time (decoded to UTC on read)."""
    encoding = {"time": {"units": "hours since 2026-06-01 00:00:00+09:00", "dtype": "int32"}}
    sensors.to_netcdf(path, encoding=encoding)


def long_sensor_rows() -> str:
    """Long CSV: KITA-01/02 hourly, KITA-03 every 3 h; gaps as empty and 'nan'."""
    lines = ["district_id,timestamp,channel,value"]
    for district, every in (("KITA-01", 1), ("KITA-02", 1), ("KITA-03", 3)):
        for hour in range(0, 6, every):
            stamp = (START + pd.Timedelta(hours=hour)).isoformat()
            lines.append(f"{district},{stamp},traffic_volume,{300 + 10 * hour}")
            lines.append(f"{district},{stamp},rainfall,{0.5 * (hour % 2)}")
    lines[3] = lines[3].rsplit(",", 1)[0] + ","  # an empty value: a gap
    lines[6] = lines[6].rsplit(",", 1)[0] + ",nan"  # written NaN: a gap too
    return "\n".join(lines) + "\n"


def write_images(folder: Path, rows: list[tuple[str, str, str]]) -> None:
    """Camera stills (PNG and JPEG, not square) and their index.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for _, _, name in rows:
        size = (32, 24) if name.endswith(".png") else (40, 40)
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, optimize=True)
    index = pd.DataFrame(rows, columns=["district_id", "timestamp", "file"])
    index.to_csv(folder / "index.csv", index=False)


REPORTS = [
    (
        "KITA-01",
        "2026-06-01T08:15:00+09:00",
        "citizen_app",
        "Crowd building up at Akabane station east exit",
    ),
    (
        "KITA-04",
        "2026-06-01T09:40:00+09:00",
        "ward_office",
        'Oji festival "Kitsune no Gyoretsu" road closures, 18:00-21:00',
    ),
    ("KITA-05", "2026-06-01T01:05:00Z", "police", "Bicycle theft reported near Jujo Ginza"),
]
EVENTS = [
    ("2026-06-01T10:20:00+09:00", "traffic", "traffic_accident"),
    ("2026-06-01T11:05:00+09:00", "safety", "theft"),
    ("2026-06-01T12:30:00+09:00", "disaster", "flooding"),
]


def make_good(out: Path) -> gpd.GeoDataFrame:
    """Valid files in every format, and a spec.toml that imports a City from them."""
    wards = wards_in_plane_crs()
    lonlat = wards.to_crs("EPSG:4326")
    lonlat.to_file(out / "wards.geojson", driver="GeoJSON", COORDINATE_PRECISION=7)
    write_shapefile_zip(wards, out / "wards_shp.zip")
    write_geopackage(wards, out / "wards.gpkg")
    wards.to_parquet(out / "wards.parquet")
    ids = list(wards["district_id"])
    write_netcdf(gridded_sensors(ids, steps=24, every_hours=1, seed=1), out / "sensors.nc")
    subset = ["KITA-05", "KITA-02", "KITA-06", "KITA-01"]  # a subset, in any order
    zarr_store = out / "sensors.zarr"
    shutil.rmtree(zarr_store, ignore_errors=True)
    gridded_sensors(subset, steps=12, every_hours=2, seed=2).to_zarr(zarr_store, zarr_format=2)
    (out / "sensors_long.csv").write_text(long_sensor_rows())
    write_images(
        out / "cameras",
        [
            ("KITA-01", "2026-06-01T08:00:00+09:00", "akabane_east_0800.png"),
            ("KITA-01", "2026-06-01T09:00:00+09:00", "akabane_east_0900.png"),
            ("KITA-04", "2026-06-01T09:00:00+09:00", "oji_bridge_0900.jpg"),
            ("KITA-05", "2026-06-01T00:30:00Z", "jujo_ginza_0930.jpg"),
        ],
    )
    reports = pd.DataFrame(REPORTS, columns=["district_id", "timestamp", "source", "text"])
    reports.to_csv(out / "reports.csv", index=False)
    (out / "reports.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reports.to_dict("records"))
    )
    points = pd.DataFrame(EVENTS, columns=["timestamp", "domain", "kind"])
    centres = [ward_centre(lonlat, row) for row in (0, 3, 5)]
    points.insert(0, "lat", [c[0] for c in centres])
    points.insert(1, "lon", [c[1] for c in centres])
    points.to_csv(out / "events_points.csv", index=False)
    named = pd.DataFrame(EVENTS, columns=["timestamp", "domain", "kind"])
    named.insert(0, "district_id", ["KITA-02", "KITA-03", "KITA-06"])
    named.to_csv(out / "events_districts.csv", index=False)
    (out / "spec.toml").write_text(SPEC)
    return lonlat


SPEC = """\
# Kita City hand-off: one file per modality, paths relative to this file.
name = "Kita City (fixture)"
timezone = "Asia/Tokyo"

[districts]
path = "wards_shp.zip"
format = "shapefile"

[sensors]
path = "sensors_long.csv"
format = "csv"

[images]
path = "cameras"
format = "folder"
frame_size = 16

[reports]
path = "reports.jsonl"
format = "jsonl"

[events]
path = "events_points.csv"
format = "csv"
"""


def make_bad(out: Path, lonlat: gpd.GeoDataFrame) -> None:
    """Files that each break one rule (see the module docstring of datasets.schema)."""
    bad = out / "bad"
    bad.mkdir(exist_ok=True)
    bowtie = lonlat.copy()
    x0, y0, x1, y1 = bowtie.geometry.iloc[2].bounds
    bowtie.loc[2, "geometry"] = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    bowtie.to_file(bad / "wards_bowtie.geojson", driver="GeoJSON")
    line = lonlat.copy()
    line.loc[4, "geometry"] = LineString(list(line.geometry.iloc[4].exterior.coords)[:2])
    line.to_file(bad / "wards_line.geojson", driver="GeoJSON")
    duplicate = lonlat.copy()
    duplicate.loc[3, "district_id"] = "KITA-02"
    duplicate.to_file(bad / "wards_duplicate_ids.geojson", driver="GeoJSON")
    write_shapefile_zip(wards_in_plane_crs(), bad / "wards_no_crs.zip", with_prj=False)
    text = (out / "wards.geojson").read_text()
    (bad / "wards_truncated.geojson").write_text(text[: int(len(text) * 0.6)])

    long = (out / "sensors_long.csv").read_text().splitlines()
    long[5] = long[5].rsplit(",", 1)[0] + ",inf"
    (bad / "sensors_inf.csv").write_text("\n".join(long) + "\n")
    sensors = xr.load_dataset(out / "sensors.nc")
    sensors["temperature"][3, 5] = -np.inf
    write_netcdf(sensors, bad / "sensors_inf.nc")
    whole = (out / "sensors.nc").read_bytes()
    (bad / "sensors_truncated.nc").write_bytes(whole[: len(whole) // 2])

    reports = (out / "reports.csv").read_text().splitlines()
    reports[2] = reports[2].replace("KITA-04", "KITA-99")
    (bad / "reports_unknown_district.csv").write_text("\n".join(reports) + "\n")
    reports = (out / "reports.csv").read_text().splitlines()
    reports[3] = reports[3].replace("2026-06-01T01:05:00Z", "2026-06-01 10:05:00")
    (bad / "reports_naive_timestamp.csv").write_text("\n".join(reports) + "\n")
    jsonl = (out / "reports.jsonl").read_text()
    (bad / "reports_truncated.jsonl").write_text(jsonl[: len(jsonl) - 25])

    events = pd.read_csv(out / "events_points.csv")
    events.loc[1, ["lat", "lon"]] = [35.6812, 139.7671]  # Tokyo Station: not in Kita City
    events.to_csv(bad / "events_outside.csv", index=False)

    cameras = bad / "cameras_unreadable"
    shutil.rmtree(cameras, ignore_errors=True)
    shutil.copytree(out / "cameras", cameras)
    damaged = (cameras / "oji_bridge_0900.jpg").read_bytes()
    (cameras / "oji_bridge_0900.jpg").write_bytes(damaged[: len(damaged) // 3])


def main(out: Path) -> None:
    """Write every fixture into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    lonlat = make_good(out)
    make_bad(out, lonlat)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote fixtures to {out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
