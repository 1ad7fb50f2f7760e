"""CenterNet on the synthetic shapes data: how good it gets in a few minutes of CPU training.

Trains foveal's CenterNet from scratch on ``--train`` 64 px multi-object shapes scenes (ImageNet mean/std
normalisation, random horizontal flip) with AdamW and a per-step cosine schedule (short linear warm-up),
then prints COCO mAP50 (pycocotools, COCO dicts built here) on ``--val`` held-out scenes, the training
wall time and images/s. The product goal: mAP50 >= 0.80 in under 5 minutes on 2 CPU threads.

    .venv/bin/python benchmarks/centernet_shapes.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import time

import numpy as np
import torch

from foveal.data.synthetic import CLASSES, generate
from foveal.models.centernet import CenterNet

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load(n: int, imgsz: int, seed: int) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """(n, 3, imgsz, imgsz) uint8 images and their targets (boxes xyxy pixels, 0-based labels)."""
    scenes = list(generate(n, imgsz=imgsz, seed=seed))
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).contiguous()
    targets = [
        {
            "boxes": torch.from_numpy(np.stack([o.box for o in s.objects]).reshape(-1, 4)),
            "labels": torch.tensor([o.cls for o in s.objects], dtype=torch.int64),
        }
        for s in scenes
    ]
    return images, targets


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - MEAN) / STD


def coco_map50(model: CenterNet, images: torch.Tensor, targets: list[dict], batch: int = 100) -> float:
    """COCO mAP at IoU 0.5 of ``model`` on ``images`` via pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    model.eval()
    detections = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            detections += model(normalise(images[i : i + batch]))
    h, w = images.shape[-2:]
    gt = {
        "images": [{"id": i, "height": h, "width": w} for i in range(len(images))],
        "categories": [{"id": c, "name": name} for c, name in enumerate(CLASSES)],
        "annotations": [],
    }
    results = []
    for i, (target, det) in enumerate(zip(targets, detections)):
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            bw, bh = box[2] - box[0], box[3] - box[1]
            ann = {"image_id": i, "category_id": label, "bbox": [box[0], box[1], bw, bh], "area": bw * bh}
            gt["annotations"].append({**ann, "id": len(gt["annotations"]) + 1, "iscrowd": 0})
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            results.append({"image_id": i, "category_id": label, "bbox": xywh, "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--imgsz", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--head-channels", type=int, default=None)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--size-weight", type=float, default=0.1)
    p.add_argument("--giou-weight", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, help="also print val mAP50 every N epochs")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train_images, train_targets = load(args.train, args.imgsz, seed=args.seed)
    val_images, val_targets = load(args.val, args.imgsz, seed=args.seed + 1000)
    print(f"data: {args.train} train / {args.val} val scenes generated in {time.perf_counter() - t0:.1f} s")

    model = CenterNet(
        len(CLASSES),
        width=args.width,
        stride=args.stride,
        head_channels=args.head_channels,
        size_weight=args.size_weight,
        giou_weight=args.giou_weight,
    )
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    steps_per_epoch = math.ceil(args.train / args.batch)
    total, warmup = args.epochs * steps_per_epoch, steps_per_epoch // 2

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    start, train_time = time.perf_counter(), 0.0
    for epoch in range(args.epochs):
        model.train()
        epoch_start, losses = time.perf_counter(), []
        order = torch.randperm(args.train)
        for i in range(0, args.train, args.batch):
            idx = order[i : i + args.batch]
            images = train_images[idx]
            targets = [dict(train_targets[j]) for j in idx.tolist()]
            flip = torch.rand(len(idx)) < 0.5
            images[flip] = images[flip].flip(-1)
            for target, f in zip(targets, flip.tolist()):
                if f:
                    boxes = target["boxes"].clone()
                    boxes[:, [0, 2]] = args.imgsz - target["boxes"][:, [2, 0]]
                    target["boxes"] = boxes
            batch = normalise(images).contiguous(memory_format=torch.channels_last)
            loss = model(batch, targets)
            optimizer.zero_grad(set_to_none=True)
            loss["loss"].backward()
            optimizer.step()
            scheduler.step()
            losses.append({k: float(v.detach()) for k, v in loss.items()})
        train_time += time.perf_counter() - epoch_start
        mean = {k: np.mean([d[k] for d in losses]) for k in losses[0]}
        line = " ".join(f"{k} {v:.3f}" for k, v in mean.items())
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            line += f" | val mAP50 {coco_map50(model, val_images, val_targets):.3f}"
        print(f"epoch {epoch + 1}/{args.epochs} {line} ({train_time:.0f} s)", flush=True)
    map50 = coco_map50(model, val_images, val_targets)
    model.nms_iou = 0.7
    map50_nms = coco_map50(model, val_images, val_targets)
    print(
        f"mAP50 {map50:.3f} on {args.val} val scenes ({map50_nms:.3f} with batched_nms 0.7 as a safety net); "
        f"training {train_time:.1f} s ({args.epochs * args.train / train_time:.0f} images/s, "
        f"{args.threads} threads); total {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
