"""Importers and the City schema: good files in every format, and each broken rule.

Fixtures live in tests/data/importers/ and come from make_files.py there.
"""

import dataclasses
import importlib.util
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import xarray as xr
from shapely.geometry import Polygon
from typer.testing import CliRunner

from datasets import (
    City,
    CityDataError,
    CityDataWarning,
    DistrictsFileError,
    DuplicateDistrictError,
    InvalidGeometryError,
    InvalidSensorValueError,
    MissingCRSError,
    NaiveTimestampError,
    PointOutsideDistrictsError,
    RecordsFileError,
    SensorsFileError,
    SpecFileError,
    TruncatedFileError,
    UnknownDistrictError,
    UnknownSensorDistrictError,
    UnreadableImageError,
    read_districts_file,
)
from datasets.io import (
    import_city,
    read_districts,
    read_events,
    read_images,
    read_reports,
    read_sensors,
)
from pipelines.city_io import register

DATA = Path(__file__).parent / "data" / "importers"
BAD = DATA / "bad"
IDS = [f"KITA-0{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def wards():
    return read_districts(DATA / "wards.geojson")


def write_spec(folder: Path, **paths: str) -> Path:
    """A spec in ``folder`` naming fixture files by absolute path."""
    lines = ['name = "Kita City"', 'timezone = "Asia/Tokyo"']
    for section, path in paths.items():
        lines += [f"[{section}]", f'path = "{(DATA / path).as_posix()}"']
    spec = folder / "spec.toml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


# Good files.


@pytest.mark.parametrize("name", ["wards.geojson", "wards_shp.zip", "wards.gpkg", "wards.parquet"])
def test_districts_from_every_vector_format(name, wards):
    districts = read_districts(DATA / name)
    assert districts.crs.to_epsg() == 4326
    assert list(districts["district_id"]) == IDS
    assert districts["name"].iloc[3] == "Oji"
    assert districts["population"].astype(int).tolist()[0] == 41200
    assert np.allclose(districts.total_bounds, wards.total_bounds, atol=1e-6)
    assert districts.geometry.is_valid.all()


def test_read_districts_file_still_works_from_datasets(wards):
    assert list(read_districts_file(DATA / "wards.gpkg")["district_id"]) == IDS


def test_file_without_crs_reads_with_the_crs_given(wards):
    districts = read_districts(BAD / "wards_no_crs.zip", crs="EPSG:6677")
    assert np.allclose(districts.total_bounds, wards.total_bounds, atol=1e-6)
    with pytest.raises(DistrictsFileError, match=r"wards_shp.zip \(crs\).*differs"):
        read_districts(DATA / "wards_shp.zip", crs="EPSG:4326")


def test_netcdf_sensors_decode_a_time_zone_in_the_units():
    sensors = read_sensors(DATA / "sensors.nc", IDS)
    assert sensors["traffic_volume"].dims == ("district", "time")
    assert sensors.sizes == {"district": 6, "time": 24}
    # units "hours since 2026-06-01 00:00:00+09:00": midnight in Tokyo is 15:00 UTC
    assert pd.Timestamp(sensors["time"].values[0]) == pd.Timestamp("2026-05-31T15:00")
    assert np.isnan(sensors["traffic_volume"].values[0, 2])  # NaN is a gap, not an error


def test_zarr_sensors_may_cover_a_subset_in_any_order():
    sensors = read_sensors(DATA / "sensors.zarr", IDS)
    assert list(sensors["district"].values) == ["KITA-05", "KITA-02", "KITA-06", "KITA-01"]
    steps = np.diff(sensors["time"].values) / np.timedelta64(1, "h")
    assert set(steps) == {2.0}


def test_long_csv_sensors_on_the_union_time_grid():
    sensors = read_sensors(DATA / "sensors_long.csv", IDS)
    assert list(sensors.data_vars) == ["traffic_volume", "rainfall"]
    assert sensors.sizes == {"district": 3, "time": 6}
    traffic = sensors["traffic_volume"].to_pandas()
    hourly = traffic.loc["KITA-02"].to_numpy()
    assert hourly.tolist() == [300, 310, 320, 330, 340, 350]
    every_third = traffic.loc["KITA-03"].to_numpy()  # sampled every 3 h: NaN between
    assert np.isnan(every_third[[1, 2, 4, 5]]).all() and every_third[3] == 330
    assert np.isnan(traffic.loc["KITA-01"].iloc[1])  # an empty value is a gap
    assert np.isnan(sensors["rainfall"].to_pandas().loc["KITA-01"].iloc[2])  # so is "nan"


def test_images_folder_becomes_square_frames(wards):
    frames, images = read_images(DATA / "cameras", district_ids=IDS, frame_size=8)
    assert frames.shape == (4, 8, 8, 3) and frames.dtype == np.uint8
    assert images["frame"].tolist() == [0, 1, 2, 3]
    assert images["district_id"].tolist() == ["KITA-01", "KITA-01", "KITA-04", "KITA-05"]
    assert str(images["timestamp"].dt.tz) == "UTC"
    assert images["timestamp"].iloc[0] == pd.Timestamp("2026-05-31T23:00Z")


def test_reports_csv_and_jsonl_read_the_same():
    from_csv = read_reports(DATA / "reports.csv", IDS)
    from_jsonl = read_reports(DATA / "reports.jsonl", IDS)
    pd.testing.assert_frame_equal(from_csv, from_jsonl)
    assert from_csv["text"].iloc[1].startswith('Oji festival "Kitsune no Gyoretsu"')
    assert from_csv["timestamp"].iloc[0] == pd.Timestamp("2026-05-31T23:15Z")


def test_events_by_point_and_by_district(wards):
    by_point = read_events(DATA / "events_points.csv", wards)
    assert by_point["district_id"].tolist() == ["KITA-01", "KITA-04", "KITA-06"]
    assert by_point.columns[:4].tolist() == ["district_id", "timestamp", "domain", "kind"]
    by_id = read_events(DATA / "events_districts.csv", wards)
    assert by_id["district_id"].tolist() == ["KITA-02", "KITA-03", "KITA-06"]
    assert by_id["domain"].tolist() == ["traffic", "safety", "disaster"]


def test_import_city_round_trip(tmp_path):
    city = import_city(DATA / "spec.toml", tmp_path / "kita")
    loaded = City.load(tmp_path / "kita")
    assert loaded.fingerprint() == city.fingerprint()
    assert loaded.name == "Kita City (fixture)" and loaded.timezone == "Asia/Tokyo"
    assert loaded.district_ids == IDS
    assert loaded.graph.edge_index.shape[1] == 22  # 3x2 grid, queen contiguity
    assert set(loaded.sensors.data_vars) == {"traffic_volume", "rainfall"}
    assert loaded.frames.shape == (4, 16, 16, 3)
    assert len(loaded.reports) == 3 and len(loaded.events) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kita"]


def test_import_with_districts_only_gives_empty_tables(tmp_path):
    spec = write_spec(tmp_path, districts="wards.parquet")
    import_city(spec, tmp_path / "city")
    city = City.load(tmp_path / "city")
    assert len(city.districts) == 6 and city.sensors.sizes == {"district": 0, "time": 0}
    assert city.frames.shape == (0, 16, 16, 3)
    assert city.images.empty and city.reports.empty and city.events.empty


# Malformed files: each raises its own error naming the file and the row.

MALFORMED = [
    (lambda w: read_districts(BAD / "wards_line.geojson"), InvalidGeometryError, "row 4"),
    (
        lambda w: read_districts(BAD / "wards_duplicate_ids.geojson"),
        DuplicateDistrictError,
        "row 3",
    ),
    (lambda w: read_districts(BAD / "wards_no_crs.zip"), MissingCRSError, "(crs)"),
    (lambda w: read_districts(BAD / "wards_truncated.geojson"), TruncatedFileError, "row 3"),
    (lambda w: read_sensors(BAD / "sensors_inf.csv", IDS), InvalidSensorValueError, "row 4"),
    (
        lambda w: read_sensors(BAD / "sensors_inf.nc", IDS),
        InvalidSensorValueError,
        "district 'KITA-04', time 2026-05-31T20:00:00+00:00",
    ),
    (lambda w: read_sensors(BAD / "sensors_truncated.nc"), TruncatedFileError, "end of file"),
    (
        lambda w: read_reports(BAD / "reports_unknown_district.csv", IDS),
        UnknownDistrictError,
        "row 1",
    ),
    (lambda w: read_reports(BAD / "reports_naive_timestamp.csv"), NaiveTimestampError, "row 2"),
    (lambda w: read_reports(BAD / "reports_truncated.jsonl"), TruncatedFileError, "row 2"),
    (lambda w: read_events(BAD / "events_outside.csv", w), PointOutsideDistrictsError, "row 1"),
    (
        lambda w: read_images(BAD / "cameras_unreadable", district_ids=IDS),
        UnreadableImageError,
        "oji_bridge_0900.jpg (index.csv row 2)",
    ),
]


@pytest.mark.parametrize(
    ("read", "error", "where"),
    MALFORMED,
    ids=[
        "line",
        "duplicate",
        "no-crs",
        "cut-geojson",
        "inf-csv",
        "inf-nc",
        "cut-nc",
        "unknown-district",
        "naive",
        "cut-jsonl",
        "outside",
        "bad-image",
    ],
)
def test_malformed_file_raises_its_named_error(read, error, where, wards):
    with pytest.raises(error) as caught:
        read(wards)
    message = str(caught.value)
    assert caught.value.path.name in message and where in message
    assert caught.value.path.is_relative_to(BAD)
    assert caught.value.rule in message


def test_inf_sensor_value_names_district_and_time():
    with pytest.raises(InvalidSensorValueError, match=r"'KITA-01' at 2026-05-31T17:00:00\+00:00"):
        read_sensors(BAD / "sensors_inf.csv", IDS)


def test_errors_are_caught_by_rule_and_by_file():
    assert issubclass(UnknownSensorDistrictError, SensorsFileError)
    assert issubclass(UnknownSensorDistrictError, UnknownDistrictError)
    assert issubclass(PointOutsideDistrictsError, RecordsFileError)
    with pytest.raises(DistrictsFileError):  # a cut districts file is a districts error too
        read_districts(BAD / "wards_truncated.geojson")


def test_invalid_polygon_is_repaired_with_a_warning():
    with pytest.warns(CityDataWarning, match=r"wards_bowtie.geojson \(row 2\).*Self-intersection"):
        districts = read_districts(BAD / "wards_bowtie.geojson")
    assert districts.geometry.is_valid.all()
    assert districts.geometry.iloc[2].geom_type == "MultiPolygon"


def test_polygon_without_area_cannot_be_repaired(wards, tmp_path):
    flat = wards.copy()
    x0, y0, x1, _ = flat.geometry.iloc[1].bounds
    flat.loc[1, "geometry"] = Polygon([(x0, y0), (x1, y0), ((x0 + x1) / 2, y0), (x0, y0)])
    flat.to_file(tmp_path / "flat.geojson")
    with pytest.raises(InvalidGeometryError, match=r"flat.geojson \(row 1\).*cannot repair"):
        read_districts(tmp_path / "flat.geojson")


def test_cut_binary_files_are_truncated(tmp_path):
    for name in ("wards.parquet", "wards_shp.zip", "wards.gpkg"):
        whole = (DATA / name).read_bytes()
        (tmp_path / name).write_bytes(whole[: len(whole) // 2])
        with pytest.raises(TruncatedFileError, match=rf"{name} \(end of file\).*cut short"):
            read_districts(tmp_path / name)


def test_cut_csv_rows_are_truncated_and_short_rows_are_malformed(tmp_path):
    text = (DATA / "reports.csv").read_text()
    (tmp_path / "cut.csv").write_text(text.rstrip("\n")[:-60])
    with pytest.raises(TruncatedFileError, match=r"cut.csv \(row 2\)"):
        read_reports(tmp_path / "cut.csv")
    (tmp_path / "quote.csv").write_text(text[: text.index("Kitsune") + 3])
    with pytest.raises(TruncatedFileError, match=r"quote.csv \(row 1\).*never closes"):
        read_reports(tmp_path / "quote.csv")
    lines = text.splitlines()
    lines[1] = "KITA-01,2026-06-01T08:15:00+09:00"
    (tmp_path / "short.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordsFileError, match=r"short.csv \(row 0\): has 2 fields") as caught:
        read_reports(tmp_path / "short.csv")
    assert not isinstance(caught.value, TruncatedFileError)


def test_sensor_csv_rules(tmp_path):
    text = (DATA / "sensors_long.csv").read_text()
    (tmp_path / "naive.csv").write_text(text.replace("+09:00", "", 1))
    with pytest.raises(NaiveTimestampError, match=r"naive.csv \(row 0\)") as caught:
        read_sensors(tmp_path / "naive.csv")
    assert isinstance(caught.value, SensorsFileError)
    (tmp_path / "unknown.csv").write_text(text.replace("KITA-03", "KITA-33"))
    with pytest.raises(UnknownSensorDistrictError, match=r"unknown.csv \(row 24\)"):
        read_sensors(tmp_path / "unknown.csv", IDS)
    (tmp_path / "word.csv").write_text(text.replace(",310", ",lots", 1))
    with pytest.raises(InvalidSensorValueError, match=r"word.csv \(row 14\).*not a number"):
        read_sensors(tmp_path / "word.csv")


def test_text_times_in_a_netcdf_must_state_a_zone(tmp_path):
    sensors = xr.Dataset(
        {"rainfall": (("district", "time"), [[0.0, 1.5]])},
        coords={"district": ["KITA-01"], "time": ["2026-06-01T00:00:00+09:00", "2026-06-01T01:00"]},
    )
    sensors.to_netcdf(tmp_path / "text_times.nc")
    with pytest.raises(NaiveTimestampError, match=r"text_times.nc \(row 1\)"):
        read_sensors(tmp_path / "text_times.nc", IDS)
    sensors.assign_coords(time=["2026-06-01T00:00:00+09:00", "2026-06-01T01:00Z"]).to_netcdf(
        tmp_path / "zoned.nc"
    )
    times = read_sensors(tmp_path / "zoned.nc", IDS)["time"].values
    expected = pd.DatetimeIndex(["2026-05-31T15:00", "2026-06-01T01:00"])
    assert (pd.DatetimeIndex(times) == expected).all()


# Import is all or nothing.


def test_failed_import_leaves_no_city_folder(tmp_path):
    spec = write_spec(tmp_path, districts="wards.geojson", events="bad/events_outside.csv")
    with pytest.raises(PointOutsideDistrictsError, match="events_outside.csv"):
        import_city(spec, tmp_path / "out" / "kita")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spec.toml"]


def test_failed_import_keeps_the_existing_city(tmp_path):
    before = import_city(DATA / "spec.toml", tmp_path / "kita").fingerprint()
    spec_folder = tmp_path / "next"
    spec_folder.mkdir()
    spec = write_spec(spec_folder, districts="wards.geojson", sensors="bad/sensors_inf.nc")
    with pytest.raises(InvalidSensorValueError):
        import_city(spec, tmp_path / "kita")
    assert City.load(tmp_path / "kita").fingerprint() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kita", "next"]


def test_import_never_replaces_a_folder_that_is_not_a_city(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(CityDataError, match=r"notes \(city.json\): .*not a City folder"):
        import_city(DATA / "spec.toml", tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('name = "x"\ntimezone = "Asia/Tokyo"\n', "(districts)"),
        ('name = "x"\ntimezone = "Mars/Olympus"\n[districts]\npath = "w.geojson"\n', "(timezone)"),
        (
            'name = "x"\ntimezone = "UTC"\n[districts]\npath = "w.geojson"\nfromat = "x"\n',
            "(districts.fromat)",
        ),
        ('name = "x"\ntimezone = "UTC"\n[districts]\npath = 3\n', "(districts.path)"),
        ('name = "x"\ntimezone = "UTC"\n[districts\n', "(line 3)"),
        (
            'name = "x"\ntimezone = "UTC"\n[districts]\npath = "w.geojson"\n[images]\npath = "c"\n'
            "frame_size = 0\n",
            "(images.frame_size)",
        ),
    ],
)
def test_spec_errors_name_the_key(tmp_path, text, where):
    (tmp_path / "spec.toml").write_text(text)
    with pytest.raises(SpecFileError, match=re.escape(f"spec.toml {where}")):
        import_city(tmp_path / "spec.toml", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_refused(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "x"\ntimezone = "UTC"\n[districts]\npath = "{DATA.as_posix()}/wards.gpkg"\n'
        'format = "kml"\n'
    )
    with pytest.raises(DistrictsFileError, match=r"wards.gpkg \(format\).*'kml'"):
        import_city(spec, tmp_path / "out")


# City.load holds its own folder to the same rules.


def test_load_checks_sensors_with_the_schema(tiny_city, tmp_path):
    subset = tiny_city.sensors.isel(district=[5, 2])
    folder = dataclasses.replace(tiny_city, sensors=subset).save(tmp_path / "city")
    assert list(City.load(folder).sensors["district"].values) == tiny_city.district_ids[5:1:-3]
    broken = subset.copy(deep=True)
    broken["rainfall"][1, 7] = np.inf
    broken.to_netcdf(folder / "sensors.nc")
    with pytest.raises(InvalidSensorValueError, match=r"sensors.nc \(district 'D0002'"):
        City.load(folder)
    broken.assign_coords(district=["D0005", "NOWHERE"]).to_netcdf(folder / "sensors.nc")
    with pytest.raises(UnknownSensorDistrictError, match="NOWHERE"):
        City.load(folder)


def test_load_checks_districts_with_the_schema(tiny_city, tmp_path):
    folder = tiny_city.save(tmp_path / "city")
    districts = tiny_city.districts.copy()
    districts.loc[4, "district_id"] = districts.loc[0, "district_id"]
    districts.to_parquet(folder / "districts.parquet")
    with pytest.raises(DuplicateDistrictError, match=r"districts.parquet \(row 4\)"):
        City.load(folder)


def test_errors_survive_pickling():
    error = UnreadableImageError(Path("cam/a.png"), "cannot decode", row="index.csv row 2")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UnreadableImageError and str(copy) == str(error)


# The command line.


@pytest.fixture
def city_cli():
    app = typer.Typer()
    register(app)
    return app


def test_cli_import_and_check(city_cli, tmp_path):
    runner = CliRunner()
    result = runner.invoke(city_cli, ["import", str(DATA / "spec.toml"), str(tmp_path / "kita")])
    assert result.exit_code == 0, result.output
    for text in ("districts", "EPSG:4326", "traffic_volume", "3/6", "4 (16x16 px)", "safety 1"):
        assert text in result.output
    result = runner.invoke(city_cli, ["check", str(tmp_path / "kita")])
    assert result.exit_code == 0, result.output
    assert "Kita City (fixture)" in result.output and "2026-05-31 15:00" in result.output


def test_cli_bad_data_is_one_red_line_and_exit_code_2(city_cli, tmp_path):
    spec = write_spec(tmp_path, districts="wards.geojson", reports="bad/reports_truncated.jsonl")
    result = CliRunner().invoke(city_cli, ["import", str(spec), str(tmp_path / "kita")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "reports_truncated.jsonl (row 2)" in result.stderr and "cut short" in result.stderr
    assert not (tmp_path / "kita").exists()
    result = CliRunner().invoke(city_cli, ["check", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "nowhere" in result.stderr


def test_cli_reports_a_repaired_polygon_as_a_warning(city_cli, tmp_path):
    spec = write_spec(tmp_path, districts="bad/wards_bowtie.geojson")
    result = CliRunner().invoke(city_cli, ["import", str(spec), str(tmp_path / "kita")])
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "wards_bowtie.geojson (row 2)" in result.stderr


# The fixtures are what the generator writes.


def test_generator_reproduces_the_committed_fixtures(tmp_path):
    spec = importlib.util.spec_from_file_location("make_files", DATA / "make_files.py")
    make_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_files)
    make_files.main(tmp_path)
    committed = {p.relative_to(DATA) for p in DATA.rglob("*") if p.is_file()}
    committed -= {Path("make_files.py")}
    committed = {p for p in committed if "__pycache__" not in p.parts}
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == committed
    changed = [p for p in written if (tmp_path / p).read_bytes() != (DATA / p).read_bytes()]
    assert not changed, f"regenerate with make_files.py: {changed}"
    assert sum((DATA / p).stat().st_size for p in committed) < 300_000
