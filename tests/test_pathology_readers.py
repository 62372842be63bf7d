"""Slide readers: every format opened by its real library, described the same way, read the same
way; bad files refused with the file named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
from pydicom.uid import CTImageStorage
from wsidicom import WsiDicom

from node.errors import InvalidInput, NotFound
from pathology.dicom_slide_metadata import SlideMetadata, from_dicom
from pathology.slide import Slide
from pathology.slide_opening import open_slide
from tests import slide_factory as factory

SPEC = factory.SlideSpec()


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> factory.SlideSet:
    return factory.write_slide_set(tmp_path_factory.mktemp("slides"), SPEC)


def _open(path: Path | list[Path]) -> Slide:
    return open_slide(path if isinstance(path, list) else [path])


@pytest.mark.parametrize("kind, vendor", [("svs", "aperio"), ("tiff", "generic-tiff")])
def test_tiff_slides_describe_their_pyramid(
    slides: factory.SlideSet, kind: str, vendor: str
) -> None:
    with _open(getattr(slides, kind)) as slide:
        info = slide.info
        assert info.format == vendor
        assert [(lv.width, lv.height) for lv in info.levels] == [(1000, 750), (250, 188)]
        assert [(lv.tile_width, lv.tile_height) for lv in info.levels] == [(256, 256)] * 2
        assert info.levels[1].downsample == pytest.approx(4, rel=0.01)
        assert info.mpp_x == pytest.approx(SPEC.mpp)
        assert info.icc_profile == factory.srgb_profile()


def test_svs_has_label_macro_and_thumbnail(slides: factory.SlideSet) -> None:
    with _open(slides.svs) as slide:
        assert slide.info.associated_images == ("label", "macro", "thumbnail")
        label = np.asarray(slide.associated_image("label"))
        assert label.shape == (100, 120, 3)
        assert np.abs(label.astype(int) - SPEC.label_colour).max() <= 2
        assert slide.associated_image("macro").size == (300, 100)
        assert slide.associated_image("thumbnail").size == (200, 150)


def test_generic_tiff_has_no_associated_images(slides: factory.SlideSet) -> None:
    with _open(slides.tiff) as slide:
        assert slide.info.associated_images == ()
        with pytest.raises(NotFound, match="label"):
            slide.associated_image("label")


def test_ndpi_is_read_by_openslide_hamamatsu(slides: factory.SlideSet) -> None:
    with _open(slides.ndpi) as slide:
        info = slide.info
        assert info.format == "hamamatsu"
        # NDPI levels are whole MCUs: the factory pads to 16x8 pixels.
        assert (info.width, info.height) == (1008, 752)
        assert info.mpp_x == pytest.approx(SPEC.mpp)
        assert info.associated_images == ("macro",)
        assert (info.levels[0].tile_width, info.levels[0].tile_height) == (144, 8)


def test_mrxs_is_read_by_openslide_mirax(slides: factory.SlideSet) -> None:
    with _open(slides.mrxs) as slide:
        info = slide.info
        assert info.format == "mirax"
        # MIRAX levels are whole camera images: the factory pads to 256-pixel tiles.
        assert [(lv.width, lv.height) for lv in info.levels] == [(1024, 768), (256, 192)]
        assert [lv.downsample for lv in info.levels] == [1.0, 4.0]
        assert info.mpp_x == pytest.approx(SPEC.mpp)
        assert info.associated_images == ("label", "macro", "thumbnail")
        assert slide.associated_image("label").size == (120, 100)


def test_dicom_series_is_read_by_wsidicom(slides: factory.SlideSet) -> None:
    with _open(slides.dicom.paths) as slide:
        info = slide.info
        assert info.format == "dicom"
        assert [(lv.width, lv.height, lv.downsample) for lv in info.levels] == [
            (1000, 750, 1.0), (250, 188, 4.0)]
        assert all(lv.jpeg_tiles for lv in info.levels)
        assert info.mpp_x == pytest.approx(SPEC.mpp)
        assert info.associated_images == ("label", "macro")
        assert info.icc_profile == factory.srgb_profile()
        assert slide.associated_image("macro").size == (300, 100)


@pytest.mark.parametrize("kind", ["svs", "tiff", "ndpi", "mrxs"])
def test_openslide_regions_equal_openslide_own_read(slides: factory.SlideSet, kind: str) -> None:
    path = getattr(slides, kind)
    reference = openslide.OpenSlide(str(path))
    with _open(path) as slide:
        for level, (x, y) in [(0, (256, 512)), (0, (900, 700)), (1, (0, 0))]:
            ours = np.asarray(slide.read_region(level, x, y, 256, 256))
            downsample = reference.level_downsamples[level]
            theirs = reference.read_region((int(x * downsample), int(y * downsample)), level,
                                           (256, 256))
            expected = np.asarray(theirs.convert("RGB"))
            inside = np.asarray(theirs)[..., 3] == 255
            assert np.array_equal(ours[inside], expected[inside])
            # Outside the image: white, not black or transparent.
            assert (ours[~inside] == 255).all()


def test_dicom_regions_and_tiles_equal_wsidicom_own_read(slides: factory.SlideSet) -> None:
    reference = WsiDicom.open(slides.dicom.paths)
    with _open(slides.dicom.paths) as slide:
        ours = np.asarray(slide.read_region(0, 256, 512, 256, 238))
        theirs = np.asarray(reference.read_region((256, 512), 0, (256, 238)))
        assert np.array_equal(ours, theirs)
        assert slide.read_encoded_tile(1, 0, 0) == reference.read_encoded_tile(2, (0, 0))
        # A region crossing the edge is padded with white.
        edge = np.asarray(slide.read_region(0, 900, 700, 256, 256))
        assert np.array_equal(edge[:50, :100], np.asarray(
            reference.read_region((900, 700), 0, (100, 50))))
        assert (edge[50:, :] == 255).all()


def test_regions_match_the_source_pixels_in_every_format(slides: factory.SlideSet) -> None:
    expected = factory.base_pixels(SPEC)[512:712, 256:512].astype(int)
    for paths in ([slides.svs], [slides.tiff], [slides.ndpi], [slides.mrxs], slides.dicom.paths):
        with open_slide(paths) as slide:
            region = np.asarray(slide.read_region(0, 256, 512, 256, 200)).astype(int)
            # JPEG at quality 90: close on average, whatever the reader.
            assert np.abs(region - expected).mean() < 4, slide.info.format


def test_reader_is_chosen_by_content_not_extension(
    slides: factory.SlideSet, tmp_path: Path
) -> None:
    disguised = tmp_path / "slide.ndpi"
    disguised.write_bytes(slides.tiff.read_bytes())
    with _open(disguised) as slide:
        assert slide.info.format == "generic-tiff"
    dicom_named_svs = tmp_path / "level.svs"
    dicom_named_svs.write_bytes(slides.dicom.paths[0].read_bytes())
    with _open(dicom_named_svs) as slide:
        assert slide.info.format == "dicom"


def test_ndpi_that_is_not_ndpi_is_refused_by_name(tmp_path: Path) -> None:
    fake = tmp_path / "case-12.ndpi"
    fake.write_bytes(b"this is a text file, not a slide\n" * 100)
    with pytest.raises(InvalidInput, match=r"case-12\.ndpi: not a slide format"):
        _open(fake)


@pytest.mark.parametrize("fraction", [0.3, 0.75, 0.99])
def test_truncated_svs_is_refused_by_name(
    slides: factory.SlideSet, tmp_path: Path, fraction: float
) -> None:
    data = slides.svs.read_bytes()
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InvalidInput, match=r"truncated\.svs"), _open(truncated) as slide:
        for level in range(len(slide.info.levels)):
            lv = slide.info.levels[level]
            slide.read_region(level, 0, 0, lv.width, lv.height)
        for name in slide.info.associated_images:
            slide.associated_image(name)


def test_corrupt_tile_data_is_an_error_naming_the_file(
    slides: factory.SlideSet, tmp_path: Path
) -> None:
    import tifffile

    data = bytearray(slides.svs.read_bytes())
    with tifffile.TiffFile(slides.svs) as tif:
        offset = tif.pages[0].dataoffsets[0]
        length = tif.pages[0].databytecounts[0]
    data[offset : offset + length] = b"\x00" * length
    corrupt = tmp_path / "corrupt.svs"
    corrupt.write_bytes(bytes(data))
    with _open(corrupt) as slide, pytest.raises(InvalidInput, match=r"corrupt\.svs"):
        slide.read_region(0, 0, 0, 256, 256)


def test_a_dicom_file_that_is_not_wsi_is_refused(
    slides: factory.SlideSet, tmp_path: Path
) -> None:
    dataset = pydicom.dcmread(slides.dicom.paths[0])
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    path = tmp_path / "ct.dcm"
    dataset.save_as(path, enforce_file_format=True)
    with pytest.raises(InvalidInput, match=r"ct\.dcm"):
        _open(path)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"gone\.svs"):
        _open(tmp_path / "gone.svs")


def test_specimen_chain_is_read_from_dicom(slides: factory.SlideSet) -> None:
    dataset = pydicom.dcmread(slides.dicom.paths[0], stop_before_pixels=True)
    specimen = factory.SpecimenSpec()
    assert from_dicom(dataset) == SlideMetadata(
        container_identifier=specimen.container_identifier,
        specimen_identifier=specimen.specimen_identifier,
        specimen_procedure="Excision",
        specimen_body_site="Left breast",
        block_identifier=specimen.block_identifier,
        block_procedure="Dissection",
        slide_identifier=specimen.slide_identifier,
        slide_alias=specimen.slide_alias,
        slide_stain_code="H&E",
    )


def test_json_metadata_wins_field_by_field() -> None:
    dicom = SlideMetadata(container_identifier="S1", specimen_identifier="SP", slide_alias="A")
    json = SlideMetadata.from_json({"containerIdentifier": "S1", "slideAlias": "A-1-A",
                                    "slideStainCode": "PAS"})
    merged = dicom.overridden_by(json)
    assert (merged.specimen_identifier, merged.slide_alias, merged.slide_stain_code) == (
        "SP", "A-1-A", "PAS")


def test_json_metadata_refuses_a_non_string_by_name() -> None:
    with pytest.raises(InvalidInput, match="slideAlias"):
        SlideMetadata.from_json({"slideAlias": 3})
