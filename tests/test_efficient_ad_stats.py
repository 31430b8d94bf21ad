"""EfficientAD's teacher-statistics pass: every training batch by default (Anomalib, paper), the first
``teacher_stats_batches`` when set (the smoke profile: 2, as its ``limit_train_batches``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ispad_bench.models.efficient_ad import EfficientAdISPAD


class Batches:
    def __init__(self, n: int):
        self.n, self.read = n, 0

    def __iter__(self):
        gen = torch.Generator().manual_seed(0)
        for _ in range(self.n):
            self.read += 1
            yield SimpleNamespace(image=torch.rand(1, 3, 64, 64, generator=gen))


def _model(**kwargs) -> EfficientAdISPAD:
    torch.manual_seed(0)
    return EfficientAdISPAD(model_size="small", teacher_out_channels=8, pre_trained=False, visualizer=False, **kwargs)


def test_teacher_statistics_cap(one_thread):
    every, first2, loader = Batches(5), Batches(5), Batches(2)
    full = _model().teacher_channel_mean_std(every)
    capped = _model(teacher_stats_batches=2).teacher_channel_mean_std(first2)
    assert (every.read, first2.read) == (5, 2)
    assert torch.equal(capped["mean"], _model().teacher_channel_mean_std(loader)["mean"])  # = stats of those 2
    assert not torch.equal(capped["mean"], full["mean"])
    with pytest.raises(ValueError, match="teacher_stats_batches must be >= 1"):
        _model(teacher_stats_batches=0)
