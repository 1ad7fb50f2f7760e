"""foveal: deep-learning computer vision from data to deployment.

Public API (imported lazily so ``import foveal`` stays fast)::

    foveal.train(task="classify", data="shapes/", epochs=10)
    foveal.evaluate("runs/classify/smallresnet/checkpoints/best.ckpt", "shapes/", split="test")
    foveal.predict("runs/.../best.ckpt", ["img.png", "folder/"])
    foveal.predict_video("runs/.../best.ckpt", "clip.mp4", track=True, stride=2)
    foveal.load("runs/.../best.ckpt")            # also .onnx / .ts files from foveal.export
    foveal.export("runs/.../best.ckpt", "onnx")  # parity-checked, metadata inside
    foveal.active_query("runs/.../best.ckpt", "unlabelled/", n=100, strategy="entropy")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "train": "foveal.engine.fit",
    "TrainResult": "foveal.engine.fit",
    "evaluate": "foveal.engine.evaluation",
    "predict": "foveal.engine.evaluation",
    "predict_video": "foveal.video.predict",
    "load": "foveal.engine.checkpoint",
    "lr_find": "foveal.engine.lr_find",
    "list_models": "foveal.tasks",
    "write_synthetic": "foveal.data.synth_writers",
    "cross_validate": "foveal.analysis.cv",
    "find_label_errors": "foveal.analysis.label_errors",
    "ensemble": "foveal.analysis.ensemble",
    "tune": "foveal.analysis.tune",
    "calibrate": "foveal.analysis.calibration",
    "baseline": "foveal.analysis.baseline",
    "active_query": "foveal.analysis.active.query",
    "active_simulate": "foveal.analysis.active.simulate",
    "explain": "foveal.explain.saliency",
    "features": "foveal.explain.features",
    "check_dataset": "foveal.data.health",
    "eda_dataset": "foveal.report.eda_html",
    "split_dataset": "foveal.data.splitting",
    "write_gallery": "foveal.report.gallery",
    "write_report": "foveal.report.html",
    "export": "foveal.export.export",
    "benchmark": "foveal.export.benchmark",
    "FovealError": "foveal.errors",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'foveal' has no attribute '{name}'")
