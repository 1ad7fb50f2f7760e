"""Convert detection datasets between COCO, YOLO and Pascal VOC (``foveal data convert``)."""

from __future__ import annotations

from pathlib import Path

from foveal.data.det_loading import WRITE_FORMATS, load_detection, write_detection
from foveal.data.formats.common import DetectionData, check_output
from foveal.errors import check_choice


def convert_dataset(
    src: str | Path, to: str, out: str | Path, fmt: str = "auto", on_bad_image: str = "error"
) -> tuple[Path, DetectionData]:
    """Read ``src`` (``fmt`` 'auto', 'coco', 'yolo' or 'voc') and write it as ``to`` to the new or
    empty folder ``out``; returns ``out`` and the data read (checked: see ``load_detection``)."""
    check_choice("output format", to, WRITE_FORMATS)
    check_output(out)  # fail before reading a large dataset
    data = load_detection(src, fmt, on_bad_image)
    return write_detection(out, data, to), data


def convert(
    src: str | Path, to: str, out: str | Path, fmt: str = "auto", on_bad_image: str = "error"
) -> Path:
    """Convert the detection dataset ``src`` to the format ``to`` ('coco', 'yolo', 'voc') in ``out``.

    Boxes, categories and splits carry over; polygons between COCO and YOLO, keypoints between COCO and
    YOLO pose; VOC keeps boxes only, rounded to whole pixels. Returns ``out`` as a Path.
    """
    return convert_dataset(src, to, out, fmt, on_bad_image)[0]
