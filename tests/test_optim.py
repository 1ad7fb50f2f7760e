"""Optimizers (param groups, lookahead) and LR schedules (sequences vs torch references, state dicts)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, CyclicLR, StepLR

from foveal.engine.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from foveal.errors import ConfigError

BASE_LR = 0.1


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 1))


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("lookahead", [False, True])
def test_each_optimizer_reduces_loss(name: str, lookahead: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = _net()
    opt = build_optimizer(model.parameters(), name, lr=0.01, weight_decay=1e-4, lookahead=lookahead)
    first = None
    for _ in range(150):
        loss = nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = _net()
    opt = build_optimizer(model.parameters(), "sgd", lr=0.1, weight_decay=0.05)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[2].bias),
    }
    # decoupled decay really skips the bias: with zero gradients only the weights shrink
    opt = build_optimizer(model.parameters(), "adamw", lr=0.1, weight_decay=0.5)
    bias, weight = model[0].bias.detach().clone(), model[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(model[0].bias, bias)
    torch.testing.assert_close(model[0].weight, weight * (1 - 0.1 * 0.5))


def test_optimizer_options_and_errors() -> None:
    model = _net()
    sgd = build_optimizer(model.parameters(), "sgd", lr=0.1, momentum=0.8, nesterov=True)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    assert isinstance(build_optimizer(model.parameters(), "radam"), torch.optim.RAdam)
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(model.parameters(), "sgd", momentum=0.0, nesterov=True)
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(model.parameters(), "adam", nesterov=True)
    with pytest.raises(ConfigError, match="did you mean: .*adamw"):
        build_optimizer(model.parameters(), "adamx")
    with pytest.raises(ConfigError, match="lr"):
        build_optimizer(model.parameters(), "adam", lr=0.0)


def test_lookahead_interpolates_every_k_steps() -> None:
    """Every k=6 steps the weights move halfway back to the previous sync point (timm starts the slow
    weights at the first sync, so the first sync at step 6 keeps the fast weights)."""
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def run(lookahead: bool, steps: int) -> list[torch.Tensor]:
        model = _net()
        opt = build_optimizer(model.parameters(), "adam", lr=0.05, lookahead=lookahead)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for p6, p12, slow in zip(run(False, 6), run(False, 12), run(True, 12)):
        torch.testing.assert_close(slow, p6 + 0.5 * (p12 - p6))
    assert not all(torch.allclose(a, b) for a, b in zip(run(False, 12), run(True, 12)))


def test_lookahead_with_scheduler_and_state_dict() -> None:
    model = _net()
    opt = build_optimizer(model.parameters(), "adamw", lr=BASE_LR, lookahead=True)
    sched = build_scheduler(opt, "cosine", epochs=2, steps_per_epoch=5, warmup_epochs=1)["scheduler"]
    reference = _lrs("cosine", epochs=2, steps_per_epoch=5, warmup_epochs=1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
    assert lrs == pytest.approx(reference)
    state = _roundtrip(opt.state_dict())
    assert any("lookahead_slow_buff" in s for s in state["state"].values())


def _lrs(name: str, opt_name: str = "sgd", **kwargs) -> list[float]:
    """The lr used at every optimizer step of the whole schedule."""
    opt = build_optimizer(_net().parameters(), opt_name, lr=BASE_LR)
    config = build_scheduler(opt, name, **kwargs)
    assert config["interval"] == "step"
    total = kwargs["epochs"] * kwargs["steps_per_epoch"]
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        assert all(g["lr"] == lrs[-1] for g in opt.param_groups)
        opt.step()
        config["scheduler"].step()
    return lrs


def _reference(make, total: int, opt_name: str = "sgd") -> list[float]:
    opt = build_optimizer(_net().parameters(), opt_name, lr=BASE_LR)
    sched = make(opt)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_none_is_constant_and_warmup_ramps_linearly() -> None:
    opt = build_optimizer(_net().parameters(), "sgd", lr=BASE_LR)
    assert build_scheduler(opt, "none", epochs=3, steps_per_epoch=4) is None
    lrs = _lrs("none", epochs=3, steps_per_epoch=4, warmup_epochs=1.5)
    assert lrs[:6] == pytest.approx([BASE_LR * (s + 1) / 7 for s in range(6)])
    assert lrs[6:] == pytest.approx([BASE_LR] * 6)


def test_cosine_matches_torch_and_ends_near_min() -> None:
    lrs = _lrs("cosine", epochs=4, steps_per_epoch=5, min_lr_ratio=0.05)
    ref = _reference(lambda o: CosineAnnealingLR(o, T_max=20, eta_min=BASE_LR * 0.05), 20)
    assert lrs == pytest.approx(ref)
    warm = _lrs("cosine", epochs=4, steps_per_epoch=5, warmup_epochs=1, min_lr_ratio=0.05)
    assert warm[:5] == pytest.approx([BASE_LR * (s + 1) / 6 for s in range(5)])
    assert warm[5] == pytest.approx(BASE_LR)
    assert all(a > b for a, b in zip(warm[5:], warm[6:]))
    assert warm[-1] == pytest.approx(BASE_LR * 0.05, abs=0.015 * BASE_LR)


def test_step_decays_at_epoch_boundaries() -> None:
    lrs = _lrs("step", epochs=6, steps_per_epoch=4, step_size=2, gamma=0.5)
    ref = _reference(lambda o: StepLR(o, step_size=8, gamma=0.5), 24)
    assert lrs == pytest.approx(ref)
    assert lrs[7] == pytest.approx(BASE_LR) and lrs[8] == pytest.approx(BASE_LR / 2)
    assert lrs[16] == pytest.approx(BASE_LR / 4)
    default = _lrs("step", epochs=6, steps_per_epoch=4)  # a third of the epochs
    assert default[7] == pytest.approx(BASE_LR) and default[8] == pytest.approx(BASE_LR * 0.1)


def test_onecycle_peaks_at_max_lr() -> None:
    lrs = _lrs("onecycle", "adam", epochs=5, steps_per_epoch=8, warmup_epochs=1, max_lr=0.4)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(0.4) and peak in (7, 8)
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert lrs[-1] < 0.4 * 0.02
    assert all(a <= b for a, b in zip(lrs[: peak + 1], lrs[1 : peak + 1]))


def test_cyclic_matches_torch_with_adam() -> None:
    kwargs = {"epochs": 6, "steps_per_epoch": 3, "step_size": 1, "min_lr_ratio": 0.1, "max_lr": 0.3}
    lrs = _lrs("cyclic", "adam", **kwargs)
    ref = _reference(
        lambda o: CyclicLR(o, base_lr=BASE_LR * 0.1, max_lr=0.3, step_size_up=3, cycle_momentum=False),
        18,
        "adam",
    )
    assert lrs == pytest.approx(ref)
    warm = _lrs("cyclic", "adam", warmup_epochs=1, **kwargs)
    assert warm[:3] == pytest.approx([0.3 * (s + 1) / 4 for s in range(3)])
    assert warm[3] == pytest.approx(0.3) and warm[6] == pytest.approx(BASE_LR * 0.1)


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", [s for s in SCHEDULERS if s != "none"] + ["none"])
def test_scheduler_state_dict_loads_weights_only_and_resumes(name: str) -> None:
    kwargs = {"epochs": 4, "steps_per_epoch": 3, "warmup_epochs": 1}
    full = _lrs(name, "adam", **kwargs)
    opt = build_optimizer(_net().parameters(), "adam", lr=BASE_LR)
    sched = build_scheduler(opt, name, **kwargs)["scheduler"]
    for _ in range(5):
        opt.step()
        sched.step()
    saved_opt, saved_sched = _roundtrip(opt.state_dict()), _roundtrip(sched.state_dict())
    opt2 = build_optimizer(_net().parameters(), "adam", lr=BASE_LR)
    sched2 = build_scheduler(opt2, name, **kwargs)["scheduler"]
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    resumed = []
    for _ in range(7):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(full[5:])


def test_scheduler_errors() -> None:
    opt = build_optimizer(_net().parameters(), "sgd", lr=BASE_LR)
    with pytest.raises(ConfigError, match="did you mean: cosine"):
        build_scheduler(opt, "cosin", epochs=2, steps_per_epoch=2)
    with pytest.raises(ConfigError, match="warmup_epochs=3"):
        build_scheduler(opt, "cosine", epochs=2, steps_per_epoch=2, warmup_epochs=3)
    with pytest.raises(ConfigError, match="gamma"):
        build_scheduler(opt, "step", epochs=2, steps_per_epoch=2, gamma=0.0)
    assert math.isclose(opt.param_groups[0]["lr"], BASE_LR)


def test_lightning_resume_with_lookahead_and_onecycle(tmp_path) -> None:
    """A run resumed from a checkpoint (read with weights_only=True) ends where an uninterrupted one does."""
    import lightning as L

    x = torch.randn(32, 3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8
    )

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def training_step(self, batch, batch_idx):
            return nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            opt = build_optimizer(self.parameters(), "adamw", lr=0.01, weight_decay=0.01, lookahead=True)
            return {
                "optimizer": opt,
                "lr_scheduler": build_scheduler(opt, "onecycle", epochs=4, steps_per_epoch=4),
            }

    def trainer(epochs: int) -> L.Trainer:
        return L.Trainer(
            max_epochs=epochs,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=tmp_path,
            accelerator="cpu",
        )

    straight = Module()
    t0 = trainer(4)
    t0.fit(straight, loader)
    first = Module()
    t = trainer(2)
    t.fit(first, loader)
    t.save_checkpoint(tmp_path / "half.ckpt")
    torch.load(tmp_path / "half.ckpt", weights_only=True)
    resumed = Module()
    t2 = trainer(4)
    t2.fit(resumed, loader, ckpt_path=tmp_path / "half.ckpt")
    assert t2.optimizers[0].param_groups[0]["lr"] == pytest.approx(t0.optimizers[0].param_groups[0]["lr"])
    assert t2.optimizers[0].param_groups[0]["lr"] < 0.01 * 0.05
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
