"""``foveal export`` (ONNX / TorchScript with a parity check) and ``foveal benchmark`` (runtimes)."""

from __future__ import annotations

import argparse
from typing import Any


def run_export(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.export.export import export

    report = export(
        args.weights,
        args.format,
        out=args.out,
        opset=args.opset,
        dynamic=args.dynamic,
        half=args.half,
        simplify=args.simplify,
        batch=args.batch,
        data=args.data,
        images=args.images,
        check_images=args.check_images,
        atol=args.atol,
        rtol=args.rtol,
        min_agreement=args.min_agreement,
        threads=args.threads,
    )
    if not args.json:
        parity = report["parity"]
        agreement = parity["agreement"]
        print(f"exported {report['file']} ({report['bytes'] / 1e6:.2f} MB, input {report['input']['shape']})")
        print(f"decode: {report['decode']}")
        print(
            f"parity on {report['checked_on']}: max |diff| {parity['max_abs_diff']:.3g}, "
            f"{agreement['name']} {agreement['value']:.4f}: passed (export.json beside the file)"
        )
    return report


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from foveal.export.benchmark import benchmark

    report = benchmark(
        args.weights,
        batch=args.batch,
        runtimes=args.runtimes.split(","),
        threads=args.threads,
        iterations=args.iterations,
        data=args.data,
        images=args.images,
        out=args.out,
    )
    if not args.json:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{report['model']} ({report['task']}, {report['imgsz']} px, {report['threads']} threads)"
        )
        for column in ("runtime", "batch", "median ms", "p90 ms", "images/s", "vs eager", "agreement"):
            table.add_column(column, justify="left" if column == "runtime" else "right")
        for row in report["rows"]:
            agree = report["agreement"].get(row["runtime"])
            table.add_row(
                row["runtime"],
                str(row["batch"]),
                f"{row['median_ms']:.2f}",
                f"{row['p90_ms']:.2f}",
                f"{row['images_per_s']:.1f}",
                "" if row["speedup"] is None else f"{row['speedup']:.2f}x",
                "" if agree is None else f"{agree['name']} {agree['value']:.4f}",
            )
        Console().print(table)
        print(f"agreement measured on {report['agreement_images']}")
        if report["int8_metric"]:
            m = report["int8_metric"]
            print(f"int8 {m['metric']}: {m['int8']} (eager {m['eager']})")
    return report


def _check_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", default=None, help="dataset whose val images check the export (default: the training data)"
    )
    p.add_argument("--images", nargs="+", default=None, help="image files/folders/globs to check on instead")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the runtimes (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against it")
    p.add_argument("--weights", required=True, help="checkpoint (.ckpt) or run folder")
    p.add_argument("--format", default="onnx", help="onnx | torchscript")
    p.add_argument(
        "--out", default=None, help="file to write (default: beside the checkpoint, best.onnx / best.ts)"
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--dynamic", action="store_true", help="free batch, height and width axes")
    p.add_argument("--half", action="store_true", help="float16 weights and inputs")
    p.add_argument("--simplify", action="store_true", help="fold constants and drop dead nodes (onnxscript)")
    p.add_argument("--batch", type=int, default=1, help="the static batch size (without --dynamic)")
    p.add_argument("--check-images", type=int, default=32, help="images the parity check runs on")
    p.add_argument("--atol", type=float, default=None, help="parity: absolute tolerance (1e-4; --half 1e-2)")
    p.add_argument("--rtol", type=float, default=None, help="parity: relative tolerance (1e-4; --half 1e-2)")
    p.add_argument(
        "--min-agreement", type=float, default=None, help="parity: least agreement (0.99; --half 0.95)"
    )
    _check_flags(p)
    p.set_defaults(func=run_export)
    p = commands.add_parser(
        "benchmark", help="latency/throughput: eager vs TorchScript vs onnxruntime (+int8)"
    )
    p.add_argument("--weights", required=True, help="checkpoint (.ckpt) or run folder")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    p.add_argument(
        "--runtimes", default="eager,torchscript,onnxruntime,onnxruntime-int8", help="comma-separated"
    )
    p.add_argument("--iterations", type=int, default=20, help="timed calls per runtime and batch")
    p.add_argument("--out", default=None, help="also write the report as JSON to this file")
    _check_flags(p)
    p.set_defaults(func=run_benchmark)
