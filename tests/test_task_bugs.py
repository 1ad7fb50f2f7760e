"""Regression tests of two contract bugs: each failed before the fix (shown on the earlier layout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from foveal.config import make_config
from foveal.engine.calibrated import temper_model
from foveal.engine.merge import MergedModel, parse_tta
from foveal.engine.module import TaskModule
from foveal.tasks.classify import ClassifyTask
from foveal.tasks.detection import DetectTask
from foveal.tasks.segment import SegmentTask
from tests.task_metas import meta_for


class _FixedDetector(nn.Module):
    """One box of score 0.8 per image, symmetric under a horizontal flip of a 32 px image."""

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        box = {"boxes": torch.tensor([[4.0, 4.0, 28.0, 28.0]]), "scores": torch.tensor([0.8])}
        return [{**box, "labels": torch.tensor([0])} for _ in x]


@pytest.mark.parametrize("members", [1, 2])
def test_calibrated_detector_temperature_is_applied_once_under_tta_and_ensembles(members: int) -> None:
    # before: DetectTask.forward tempered the scores inside MergedModel (per member) and again around
    # the merged model (engine.inference.run_model): sigmoid(logit(0.8) / 4) = 0.586 instead of 0.667
    task = DetectTask(meta_for("detect", temperature=2.0))
    models = [_FixedDetector().eval() for _ in range(members)]
    for model in models:
        temper_model(task, model)  # what foveal.load does for a calibrated checkpoint
    merged = MergedModel(task, models, parse_tta("hflip")).eval()
    out = task.forward(merged, torch.zeros(1, 3, 32, 32))  # as engine.inference.run_model calls it
    expected = torch.sigmoid(torch.logit(torch.tensor(0.8)) / 2.0)
    torch.testing.assert_close(out[0]["scores"][0], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "task",
    [
        ClassifyTask(meta_for("classify", loss="ce", class_weights=[1.0, 3.0])),
        ClassifyTask(meta_for("classify", kind="multilabel", loss="bce", class_weights=[1.0, 3.0])),
        SegmentTask(meta_for("segment", loss="ce+dice", class_weights=[1.0, 3.0])),
    ],
    ids=["ce", "bce", "segment"],
)
def test_loss_buffers_follow_the_model(task) -> None:
    # before: the loss module was cached on the Task (not an nn.Module), so its class weights stayed
    # float32 on the CPU while the LightningModule moved (to float64 here, to CUDA in training)
    module = TaskModule(task, make_config(), nn.Conv2d(3, 2, 1))
    module.to(torch.float64)
    buffers = [b for name, b in module.named_buffers() if name.startswith("criterion.")]
    assert buffers and all(b.dtype == torch.float64 for b in buffers)
    module.to("meta")
    assert all(b.device.type == "meta" for name, b in module.named_buffers() if name.startswith("criterion."))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_weighted_loss_trains_on_cuda() -> None:
    task = ClassifyTask(meta_for("classify", loss="ce", class_weights=[1.0, 3.0]))
    module = TaskModule(task, make_config(), task.build_model()).cuda()
    images, targets = torch.rand(4, 3, 32, 32, device="cuda"), torch.tensor([0, 1, 0, 1], device="cuda")
    loss = task.loss(task.forward(module.model, images), targets, module.criterion)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
