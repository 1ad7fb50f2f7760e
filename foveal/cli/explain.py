"""``foveal explain`` (saliency maps) and ``foveal features`` (a layer's feature maps)."""

from __future__ import annotations

import argparse
from typing import Any


def run_explain(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.explain.saliency import explain

    result = explain(
        args.weights,
        args.sources,
        method=args.method,
        target=args.target,
        layer=args.layer,
        out=args.out,
        window=args.window,
        stride=args.stride,
        steps=args.steps,
        box=args.box,
        region=args.region,
        conf=args.conf,
        device=args.device,
        project=args.project,
        name=args.name,
    )
    if not args.json:
        for row in result.rows:
            predicted, target = row["predicted"], row["target"]
            print(
                f"{row['path']}: predicted {predicted['class']} {predicted['probability']:.3f}, "
                f"target {target['class']} -> {row['overlay']}"
            )
        print(f"summary: {result.json_path}")
    return result.to_dict()


def run_features(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.errors import ConfigError

    if args.list_layers:
        from foveal.explain.features import list_layers

        names = list_layers(args.weights)
        if not args.json:
            print("\n".join(names))
        return {"layers": names}
    if args.image is None:
        raise ConfigError("foveal features needs an IMAGE (or --list-layers to list the conv layers)")
    from foveal.explain.features import features

    path = features(
        args.weights,
        args.image,
        layer=args.layer,
        out=args.out,
        max_maps=args.max_maps,
        device=args.device,
        project=args.project,
        name=args.name,
    )
    if not args.json:
        print(f"feature maps: {path}")
    return {"out": str(path)}


def _window(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a pixel size or comma list of sizes") from None


def _run_folder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--project", default=None, help="parent folder of a new explain folder (default runs/<task>)"
    )
    p.add_argument("--name", default=None, help="name of the new explain folder (default explain)")


def add_parsers(commands: Any) -> None:
    """Register ``explain`` and ``features`` on the top-level sub-parsers."""
    p = commands.add_parser(
        "explain", help="saliency maps: occlusion, gradients, integrated gradients, Grad-CAM"
    )
    p.add_argument("--weights", required=True, help="checkpoint (.ckpt) or run folder")
    p.add_argument("sources", nargs="+", help="images, folders or glob patterns")
    p.add_argument(
        "--method",
        default="gradcam",
        help="occlusion | gradients | integrated-gradients | gradcam, or a comma list (a figure row each)",
    )
    p.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--layer", default=None, help="gradcam: module name (default: the last conv layer)")
    p.add_argument(
        "--box", type=int, default=None, help="detect: index of the detection, best first (default 0)"
    )
    p.add_argument(
        "--conf", type=float, default=0.25, help="detect: minimum score of the detections --box counts"
    )
    p.add_argument(
        "--region", default=None, help="segment: x0,y0,x1,y1 image pixels (default: the predicted pixels)"
    )
    p.add_argument("--window", type=_window, default=None, help="occlusion: window side(s) in px, e.g. 4,8")
    p.add_argument(
        "--stride", type=int, default=None, help="occlusion: stride in px (default: half the window)"
    )
    p.add_argument("--steps", type=int, default=32, help="integrated-gradients: number of steps")
    p.add_argument(
        "--out",
        default=None,
        help="folder for the PNGs and explain.json (default: <run>/explain, else a new PROJECT/NAME)",
    )
    _run_folder_options(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run_explain)
    p = commands.add_parser("features", help="grid of one layer's feature maps for an image")
    p.add_argument("--weights", required=True, help="checkpoint (.ckpt) or run folder")
    p.add_argument("image", nargs="?", default=None, help="image file")
    p.add_argument("--layer", default=None, help="module name (default: the last conv layer)")
    p.add_argument("--list-layers", action="store_true", help="print the conv layer names and exit")
    p.add_argument("--max-maps", type=int, default=64, help="maps drawn at most")
    p.add_argument(
        "--out", default=None, help="PNG path (default: <explain folder>/features-<layer>-<image>.png)"
    )
    _run_folder_options(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run_features)
