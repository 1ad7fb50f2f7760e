"""The object-task family: ``detect`` (boxes), ``instance`` (boxes + masks) and ``pose`` (boxes +
keypoints), each its own module on one shared base (``foveal.tasks.detection.base.ObjectTask``)
whose hooks the family members override."""

from foveal.tasks.detection.base import Detections, ObjectMeta, ObjectTask
from foveal.tasks.detection.detect import DetectTask
from foveal.tasks.detection.instance import InstanceTask
from foveal.tasks.detection.pose import PoseMeta, PoseTask

__all__ = ["Detections", "DetectTask", "InstanceTask", "ObjectMeta", "ObjectTask", "PoseMeta", "PoseTask"]
