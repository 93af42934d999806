"""Tilt-series .mdoc parser against the real SerialEM files in /work/shared/fixtures/mdoc (values
read by hand from the files), a Tomography 5 file written here in that program's layout
(FORMATS.md §2: CRLF, trailing spaces, NaN, EER movies), and broken input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.tomo.layout import position_of_movie
from cryovault.ingest.tomo.parsers import parse_tilt_series_mdoc

MDOC = Path("/work/shared/fixtures/mdoc")


def _tomo5_section(z: int, angle: float, prior: float, time: str, movie: str) -> str:
    return (f"[ZValue = {z}]\n"
            f"TiltAngle = {angle:.2f}\nStagePosition = 440.20 -722.52 \nStageZ = 29.73\n"
            "Magnification = 42000\nIntensity = 0.00\nExposureDose = 3.05\n"
            "PixelSpacing = 2.95\nSpotSize = 7\nDefocus = -4.12\nImageShift = 0.01 1.78 \n"
            "RotationAngle = -84.23\nExposureTime = 2.50\nBinning = 1\nMagIndex = 27\n"
            "CountsPerElectron = 46.98\nMinMaxMean = 2170.00 14617.00 5536.87 \n"
            f"TargetDefocus = -3.50\nPriorRecordDose = {prior:.2f}\n"
            f"SubFramePath = D:\\Tomo\\Session_7\\Position_3_{z + 1:03d}_{angle:.2f}_{movie}\n"
            "NumSubFrames = 1\nFrameDosesAndNumber = 3.05 1  \n"
            f"DateTime = {time}\nFilterSlitAndLoss = NaN NaN \nChannelName = \n"
            "CameraLength = NaN\n\n")


TOMO5 = ("DataMode = 6\nImageSize = 4096 4096 \nImageFile = Position_3.mrc\n"
         "PixelSpacing = 2.95\nVoltage = 300.00\n\n"
         "[T = Tomography: TITAN52337180    13-Jan-2025  09:00:01]\n\n"
         "[T =   TiltAxisAngle = -174.23  Binning = 1  SpotSize = 7]\n\n"
         + _tomo5_section(0, 0.0, 0.0, "13-Jan-2025  09:00:05", "20250113_090005_EER.eer")
         + _tomo5_section(1, 3.0, 3.05, "13-Jan-2025  09:00:41", "20250113_090041_EER.eer")
         + _tomo5_section(2, -3.0, 6.10, "13-Jan-2025  09:01:20", "20250113_090120_EER.eer")
         ).replace("\n", "\r\n")


def test_serialem_tilt_series_ts_01():
    series = parse_tilt_series_mdoc((MDOC / "serialem_tilt_series_TS_01.mdoc").read_bytes(),
                                    "TS_01")
    assert series.name == "TS_01"
    assert series.acquisition_software == "SerialEM"
    assert series.microscope == "Digitized on EMBL Krios"
    assert series.pixel_size_angstrom == 5.4
    assert series.voltage_kv is None  # this file has no Voltage line
    assert series.tilt_axis_angle_deg == 85.3
    assert series.image_size == (924, 958)
    assert series.data_mode == 1
    assert series.image_file == "TS_01.mrc"
    assert series.started_at == datetime(2015, 11, 30, 15, 14, 20, tzinfo=UTC)
    assert len(series.tilts) == 41
    assert [tilt.z_value for tilt in series.tilts] == list(range(41))
    first, last = series.tilts[0], series.tilts[-1]
    assert first.tilt_angle_deg == 0.000999877 and last.tilt_angle_deg == 60.0006
    assert min(series.tilt_angles_deg) == -59.9986
    assert first.acquired_at == datetime(2015, 11, 30, 15, 21, 38, tzinfo=UTC)  # 30-Nov-15
    assert first.sub_frame_path == "TS_01_000_0.0.mrc"  # D:\DATA\Flo\…\frames\TS_01_000_0.0.mrc
    assert last.sub_frame_path == "TS_01_040_60.0.mrc"
    assert first.number_of_frames == 8
    assert first.exposure_time_s == 0.8
    assert first.defocus_angstrom == pytest.approx(-26808.3)  # Defocus = 2.68083 µm (overfocus)
    assert first.target_defocus_angstrom == pytest.approx(40000)  # TargetDefocus = -4 µm
    assert (first.image_shift_x, first.image_shift_y) == (-0.0108126, -0.121079)
    assert (first.stage.x_um, first.stage.y_um, first.stage.z_um) == (20.7936, 155.287, 163.803)
    assert first.binning == 4 and first.magnification == 105000
    assert first.extra["MinMaxMean"] == "5 1403 623.699"
    assert {position_of_movie(tilt.sub_frame_path) for tilt in series.tilts} == {"TS_01"}


def test_serialem_4_tilt_series_with_falcon_frames():
    series = parse_tilt_series_mdoc((MDOC / "tomo_test_1.mdoc").read_bytes(), "tomo_test_1.mdoc")
    assert series.name == "tomo_test_1"
    assert series.software_version == "4.0.6"
    assert series.microscope == "eBIC Krios 3"
    assert series.voltage_kv == 300
    assert series.pixel_size_angstrom == 1.94
    assert series.tilt_axis_angle_deg == 83.8
    assert series.image_size == (4096, 4096)
    assert series.image_file == "chrom_07_ts_010.mrc"
    assert len(series.tilts) == 11
    first, last = series.tilts[0], series.tilts[-1]
    assert first.tilt_angle_deg == -0.00949884 and last.tilt_angle_deg == 17.9858
    assert first.acquired_at == datetime(2022, 8, 1, 18, 58, 35, tzinfo=UTC)  # 01-Aug-2022
    assert last.acquired_at == datetime(2022, 8, 1, 19, 10, 55, tzinfo=UTC)
    # \\192.168.10.81\StorageServer\OffloadData\\TemScripting\EF-Falcon\…\<name>
    assert first.sub_frame_path == "chrom_07_ts_010_167_000_-0.0.mrc"
    assert first.number_of_frames == 10
    assert first.defocus_angstrom == pytest.approx(7349.85)  # Defocus = -0.734985 µm
    assert first.target_defocus_angstrom == pytest.approx(55000)
    assert first.extra["FrameDosesAndNumber"] == "0 7  0 3"
    assert first.extra["NavigatorLabel"] == "167"
    values = series.metadata()
    assert json.loads(json.dumps(values)) == values
    assert values["number_of_tilts"] == 11
    assert values["min_tilt_angle_deg"] == -12.011 and values["max_tilt_angle_deg"] == 17.9858
    assert values["started_at"] == "2022-08-01T18:58:35+00:00"
    assert values["finished_at"] == "2022-08-01T19:10:55+00:00"
    tilt_values = first.metadata()
    assert json.loads(json.dumps(tilt_values)) == tilt_values
    assert tilt_values["tilt_angle_deg"] == -0.00949884
    assert tilt_values["stage_x_um"] == 96.1834 and tilt_values["stage_z_um"] == 2.81224
    assert tilt_values["acquired_at"] == "2022-08-01T18:58:35+00:00"


def test_serialem_single_frame_set():
    series = parse_tilt_series_mdoc((MDOC / "serialem_frame_set_single.mdoc").read_bytes(),
                                    "s_mmm_00993")
    assert series.acquisition_software == "SerialEM"
    assert series.voltage_kv == 300
    assert series.started_at == datetime(2021, 10, 8, 7, 38, 24, tzinfo=UTC)  # bare "T = …"
    assert series.pixel_size_angstrom == 1.2827  # from its only section
    [tilt] = series.tilts
    assert tilt.z_value == 0 and tilt.tilt_angle_deg == 32.984
    assert tilt.sub_frame_path == "s_mmm_00993_33.0_Oct08_07.39.05.tif"
    assert tilt.number_of_frames == 12
    assert tilt.binning == 0.5
    assert tilt.exposure_dose_e_per_angstrom2 == 7.65892
    assert tilt.acquired_at == datetime(2021, 10, 8, 7, 39, 8, tzinfo=UTC)  # 08-Oct-21
    assert tilt.extra["GainReference"] == "SuperRef_s_mmm_00000_-15.0_Oct08_01.59.24.dm4"


def test_serialem_montage_keeps_its_pieces_and_skips_the_summary_section():
    series = parse_tilt_series_mdoc((MDOC / "serialem_montage_section.mdoc").read_bytes(), "LMM")
    assert series.montage is True
    assert len(series.tilts) == 62  # [ZValue = 0..61]; [MontSection = 0] is a summary
    assert series.image_size == (5064, 3976)
    assert series.pixel_size_angstrom == 656.139
    assert series.tilt_axis_angle_deg == -86.7
    assert series.microscope == "Titan Krios D3692 at Institut Pasteur"
    assert series.tilts[-1].z_value == 61
    assert series.tilts[-1].stage.x_um == -919.141
    assert series.tilts[0].extra["PieceCoordinates"] == "0 0 0"
    assert series.tilts[0].sub_frame_path is None


def test_tomography_5_with_eer_movies():
    series = parse_tilt_series_mdoc(TOMO5.encode(), "Position_3")
    assert series.acquisition_software == "Tomography"
    assert series.microscope == "TITAN52337180"
    assert series.tilt_axis_angle_deg == -174.23
    assert series.voltage_kv == 300
    assert series.data_mode == 6
    assert series.image_size == (4096, 4096)
    assert series.started_at == datetime(2025, 1, 13, 9, 0, 1, tzinfo=UTC)
    assert series.tilt_angles_deg == (0.0, 3.0, -3.0)
    first = series.tilts[0]
    assert first.sub_frame_path == "Position_3_001_0.00_20250113_090005_EER.eer"
    assert first.number_of_frames == 1  # Tomography 5 writes 1 for EER
    assert first.exposure_dose_e_per_angstrom2 == 3.05
    assert series.tilts[2].prior_dose_e_per_angstrom2 == 6.10
    assert first.defocus_angstrom == pytest.approx(41200)
    assert first.target_defocus_angstrom == pytest.approx(35000)
    assert "FilterSlitAndLoss" not in first.extra  # NaN NaN
    assert "ChannelName" not in first.extra  # empty
    assert series.metadata()["total_dose_e_per_angstrom2"] == pytest.approx(9.15)
    assert {position_of_movie(t.sub_frame_path) for t in series.tilts} == {"Position_3"}


def test_tomography_5_two_digit_year_is_year_month_day():
    # Older Tomography 5 writes YY-Mon-DD; SerialEM writes DD-Mon-YY.
    old = TOMO5.replace("13-Jan-2025", "22-Feb-04")
    series = parse_tilt_series_mdoc(old.encode(), "Position_3")
    assert series.tilts[0].acquired_at == datetime(2022, 2, 4, 9, 0, 5, tzinfo=UTC)
    serialem = old.replace("Tomography:", "SerialEM:")
    series = parse_tilt_series_mdoc(serialem.encode(), "Position_3")
    assert series.tilts[0].acquired_at == datetime(2004, 2, 22, 9, 0, 5, tzinfo=UTC)


def test_times_are_converted_from_the_instrument_time_zone():
    cet = timezone(timedelta(hours=1))
    series = parse_tilt_series_mdoc(TOMO5.encode(), "Position_3", instrument_timezone=cet)
    assert series.tilts[0].acquired_at == datetime(2025, 1, 13, 8, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"   \r\n", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
    (b"Hello, this is not an mdoc\n", "line 1 is not 'key = value'"),
    (b"PixelSpacing = 1.0\nVoltage = 300\n", r"no \[ZValue = n\] section"),
    (b"PixelSpacing = 1.0\n[ZValue = 0]\nTiltAngle = abc\n",
     "line 3: TiltAngle = 'abc' is not valid"),
    (b"PixelSpacing = 1.0\n[ZValue = 0]\nStageZ = 3\n", r"\[ZValue = 0\] has no TiltAngle"),
    (b"[ZValue = 0]\nTiltAngle = 1\nDateTime = yesterday\n",
     r"\[ZValue = 0\] DateTime 'yesterday' is not a date"),
    (b"[ZValue = 0]\nTiltAngle = 1\nDateTime = 31-Feb-2024  10:00:00\n", "not a valid date"),
    (b"[ZValue = 0\nTiltAngle = 1\n", "line 1 is not a '\\[key = value\\]' header"),
    (b"[Picture = 0]\nTiltAngle = 1\n", "unknown section"),
    (b"a = b = c\n[ZValue = 0]\nTiltAngle = 1\n", "more than one '='"),
])
def test_garbage_is_refused_with_a_reason(data, message):
    with pytest.raises(IngestFormatError, match=message):
        parse_tilt_series_mdoc(data, "Position_1")


def test_an_mdoc_without_sections_may_still_be_being_written():
    with pytest.raises(IngestFormatError) as caught:
        parse_tilt_series_mdoc(TOMO5.split("[ZValue")[0].encode(), "Position_3")
    assert caught.value.possibly_incomplete


def test_a_series_needs_a_name():
    with pytest.raises(IngestFormatError, match="needs a name"):
        parse_tilt_series_mdoc(TOMO5.encode(), " ")
