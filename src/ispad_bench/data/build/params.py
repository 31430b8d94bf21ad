"""The parameters of ``data build`` in one place (defaults, their sources, validation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ispad_bench.data.augment import AFFINE_P  # §3.2.3: affine on 80-95 % of the patches; 87.5 %
from ispad_bench.data.build.crops import AREA_PX
from ispad_bench.data.build.split import TEST_SHARE
from ispad_bench.data.build.windows import LABEL_RADIUS, ROI_MIN, STRIDE
from ispad_bench.data.layout import GROUPS, REDUCED_MAX
from ispad_bench.data.modality import PATCH_SIZE
from ispad_bench.errors import BadArgument

STREAM_PATCHES = 20_000  # default stream size; the paper's are ~100k + 100k (§3.2.1): pass --stream-patches 200000
SMALL = ("pad", "skip")


@dataclass(frozen=True)
class BuildParams:
    """Everything that decides the output bytes (they all enter the fingerprint), plus ``workers`` (which does not)."""

    seed: int = 0
    window: int = PATCH_SIZE  # §3.2.2: 256x256 patches (other sizes: the loaders resize; the stream stays 256)
    stride: int = STRIDE  # §3.2: stride 160
    reduced: int = REDUCED_MAX  # §3.2.1: reduced splits of at most 500
    test_share: float = TEST_SHARE
    roi_min: float = ROI_MIN
    label_radius: int = LABEL_RADIUS
    area_px: int = AREA_PX
    defect_groups: tuple[tuple[str, str], ...] | None = None  # class -> group; None: the built-in DEFECT_GROUPS
    stream_patches: int = STREAM_PATCHES
    unaugmented: int = 0
    small: str = "pad"
    affine_p: float = AFFINE_P
    workers: int = 2

    def __post_init__(self):
        checks = [
            (self.window >= 16, f"window must be >= 16 px (the layout's patches are {PATCH_SIZE}, §3.2.2), got {self.window}"),
            (self.stride >= 1, f"stride must be >= 1, got {self.stride}"),
            (self.reduced >= 1, f"reduced must be >= 1, got {self.reduced}"),
            (0 < self.test_share < 1, f"test_share must lie in (0, 1), got {self.test_share}"),
            (0 < self.roi_min <= 1, f"roi_min must lie in (0, 1], got {self.roi_min}"),
            (self.label_radius >= 1, f"label_radius must be >= 1, got {self.label_radius}"),
            (self.area_px >= 1, f"area_px must be >= 1, got {self.area_px}"),
            (self.stream_patches == 0 or self.stream_patches >= 2, f"stream_patches must be 0 or >= 2, got {self.stream_patches}"),
            (self.unaugmented >= 0, f"unaugmented must be >= 0, got {self.unaugmented}"),
            (self.small in SMALL, f"small must be one of {', '.join(SMALL)}, got {self.small!r}"),
            (0 <= self.affine_p <= 1, f"affine_p must lie in [0, 1], got {self.affine_p}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadArgument(message)
        bad = {k: v for k, v in (self.defect_groups or ()) if v not in GROUPS}
        if bad:
            raise BadArgument(f"defect_groups maps {bad} to unknown groups; use {', '.join(GROUPS)}")

    @property
    def mapping(self) -> dict[str, str] | None:
        return dict(self.defect_groups) if self.defect_groups is not None else None

    def fingerprinted(self) -> dict:
        """The parameters as JSON for the fingerprint and ``build.json`` (``workers`` left out: no effect on bytes)."""
        out = asdict(self)
        out.pop("workers")
        out["defect_groups"] = self.mapping
        return out
