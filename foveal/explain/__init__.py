"""Understanding models: saliency maps (``foveal explain``) and feature maps (``foveal features``).

from foveal.explain import explain, features, list_layers
result = explain("runs/classify/lenet/checkpoints/best.ckpt", ["img.png"], method="gradcam,occlusion")
features("runs/.../best.ckpt", "img.png", layer="features.conv2")
"""

from __future__ import annotations

from foveal.explain.features import features, list_layers
from foveal.explain.saliency import ExplainResult, explain, mass_in_box

__all__ = ["ExplainResult", "explain", "features", "list_layers", "mass_in_box"]
