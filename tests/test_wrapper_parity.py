"""Our EfficientAD and U-Flow wrappers change how weights are found, not the method.

Each wrapper and the unwrapped Anomalib model are built side by side, given the same (seeded random)
weights, and run end to end (``AnomalibModule.forward``: pre-processing, model, post-processing) on the
same images: scores and anomaly maps must be identical.
"""

from __future__ import annotations

import torch

from ispad_bench.models.offline_timm import timm_backbones


def _seeded(module: torch.nn.Module, seed: int) -> None:
    """Every float tensor of the state dict from one seeded generator (state-dict order)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in module.state_dict().items():
            if t.is_floating_point():
                scale = 1 / max(t[0].numel(), 1) ** 0.5 if t.dim() >= 2 else 0.1
                t.copy_(torch.randn(t.shape, generator=g) * scale + (1.0 if key.endswith("running_var") else 0.0))


def _same_outputs(ours: torch.nn.Module, theirs: torch.nn.Module, images: torch.Tensor) -> None:
    theirs.load_state_dict(ours.state_dict())
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(images), theirs(images)
    assert a.anomaly_map.shape == b.anomaly_map.shape
    assert torch.isfinite(a.anomaly_map).all() and a.anomaly_map.std() > 0, "degenerate maps prove nothing"
    torch.testing.assert_close(a.anomaly_map, b.anomaly_map, rtol=0, atol=0, msg=lambda m: f"anomaly maps: {m}")
    torch.testing.assert_close(a.pred_score, b.pred_score, rtol=0, atol=0, msg=lambda m: f"image scores: {m}")


def test_efficient_ad_wrapper_matches_anomalib(one_thread):
    from anomalib.models import EfficientAd

    from ispad_bench.models import EfficientAdISPAD

    # the wrapper passes model_size through; "small" keeps this test short (the paper's "medium" is the default)
    ours = EfficientAdISPAD(model_size="small", pre_trained=False)
    theirs = EfficientAd(model_size="small")
    _seeded(ours.model, 0)
    model = ours.model
    with torch.no_grad():  # set normalisation statistics and map quantiles, as after training
        model.mean_std["std"].copy_(model.mean_std["std"].abs() + 0.5)
        for name, value in (("qa_st", 0.1), ("qb_st", 0.9), ("qa_ae", 0.2), ("qb_ae", 1.1)):
            model.quantiles[name].fill_(value)
    _same_outputs(ours, theirs, torch.rand(1, 3, 200, 240, generator=torch.Generator().manual_seed(1)))


def test_uflow_wrapper_matches_anomalib(one_thread):
    from anomalib.models import Uflow

    from ispad_bench.models import UflowISPAD

    ours = UflowISPAD(backbone="resnet18", pre_trained=False)  # mcait (CaiT-M48) is too large for a default test
    with timm_backbones(None):  # Anomalib's Uflow asks timm for pretrained weights; build it without
        theirs = Uflow(backbone="resnet18")
    _seeded(ours.model, 0)
    _same_outputs(ours, theirs, torch.rand(2, 3, 200, 240, generator=torch.Generator().manual_seed(1)))
