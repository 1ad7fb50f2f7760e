"""Understanding models: saliency maps (``foveal explain``) and feature maps (``foveal features``).

from foveal.explain import explain, features, list_layers
result = explain("runs/classify/lenet/checkpoints/best.ckpt", ["img.png"], method="gradcam,occlusion")
features("runs/.../best.ckpt", "img.png", layer="features.conv2")
"""

from __future__ import annotations

import sys
import types
from typing import Any

from foveal.explain.features import features, list_layers
from foveal.explain.saliency import ExplainResult, explain, mass_in_box

__all__ = ["ExplainResult", "explain", "features", "list_layers", "mass_in_box"]


class _CallableModule(types.ModuleType):
    """``foveal.explain(...)`` is the function even after this package is imported (the package, set as
    the attribute ``foveal.explain`` on import, would otherwise hide it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> ExplainResult:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
