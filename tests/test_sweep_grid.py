"""Grid expansion, selection, profiles and job keys of ``ispad-bench sweep``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from ispad_bench.sweep import grid
from ispad_bench.sweep import profile as profiles
from ispad_bench.sweep.profile import Row
from ispad_bench.sweep.resolve import resolve

HERE = Path(__file__).parent
TEST_CONFIGS = HERE / "sweep_configs"


def _configs(tmp_path: Path, layout: dict[str, list[str]]) -> Path:
    for method, files in layout.items():
        (tmp_path / method).mkdir(parents=True)
        for name in files:
            (tmp_path / method / name).write_text("model: {}\n")
    return tmp_path


def test_supervised_rows_are_the_papers_tables_2_3():
    slugs = [r.slug for r in profiles.SUPERVISED_ROWS]
    assert slugs == ["none", "points-1_16", "area-1_16", "mixed-1_16", "mixed-1_8", "mixed-1_4", "mixed-1_2", "mixed-1",
                     "real-only"]  # + the real-only baseline of ref [35] (§5.2, §6)
    for row in profiles.SUPERVISED_ROWS:
        assert Row.parse(row.slug) == row
    assert Row.parse("mixed-1/8") == Row("mixed", Fraction(1, 8))
    with pytest.raises(ValueError, match="bad supervised row"):
        Row.parse("mixed-x")


def test_expand_all_methods_modalities_seeds_and_rows(tmp_path):
    configs = _configs(
        tmp_path,
        {"glass": ["lsm1.yaml", "lsm2.yaml", "asm.yaml"], "supervised": ["default.yaml"], "uflow": ["lsm1.yaml"],
         "extra": ["extra.yaml"], "profiles": ["x.yaml"], "empty": []},
    )
    profile = profiles.Profile("t", seeds=(0, 1), overrides={"trainer.max_epochs": 1}, methods={"glass": {"model.init_args.a": [1, 2]}})
    jobs = grid.expand(configs, profile)
    # paper methods first in paper order, then others; profiles/ and empty folders are not methods
    assert list(dict.fromkeys(j.method for j in jobs)) == ["uflow", "glass", "supervised", "extra"]
    assert sum(j.method == "glass" for j in jobs) == 3 * 2
    assert [(j.modality, j.seed) for j in jobs if j.method == "uflow"] == [("LSM-1", 0), ("LSM-1", 1)]
    sup = [j for j in jobs if j.method == "supervised"]
    assert len(sup) == 3 * 9 * 2
    assert [j.row.slug for j in sup if j.modality == "ASM" and j.seed == 0] == [r.slug for r in profiles.SUPERVISED_ROWS]
    # a shared config gets the modality from the sweep; per-modality configs keep their own
    assert ("modality", "ASM") in sup[-1].data_args
    assert all(k != "modality" for k, _ in jobs[0].data_args)
    glass = next(j for j in jobs if j.method == "glass" and j.seed == 1)
    assert glass.config_file == (configs / "glass" / "lsm1.yaml").resolve()
    assert glass.args[:2] == ("--trainer.devices=1", "--seed_everything=1")
    assert "--trainer.max_epochs=1" in glass.args and "--model.init_args.a=[1, 2]" in glass.args
    mixed = next(j for j in sup if j.row.slug == "mixed-1_4")
    assert f"--{profiles.ROW_GROUP_KEY}=mixed" in mixed.args and f"--{profiles.ROW_FRACTION_KEY}=1/4" in mixed.args
    real_only = next(j for j in sup if j.row.slug == "real-only")
    assert {f"--{profiles.ROW_FRACTION_KEY}=1", "--data.init_args.real_only=true"} <= set(real_only.args)


def test_selection_flags(tmp_path):
    configs = _configs(tmp_path, {"glass": ["default.yaml"], "supervised": ["default.yaml"], "ddad": ["default.yaml"]})
    profile = profiles.Profile("t")
    jobs = grid.expand(configs, profile, methods=["supervised", "glass"], modalities=["asm", "lsm1"], seeds=[3],
                       rows=["none", "mixed-1"], data_root=tmp_path, overrides=["--a.b", "7"])
    assert [(j.method, j.modality, j.row.slug if j.row else None) for j in jobs] == [
        ("supervised", "ASM", "none"), ("supervised", "ASM", "mixed-1"),
        ("supervised", "LSM-1", "none"), ("supervised", "LSM-1", "mixed-1"),
        ("glass", "ASM", None), ("glass", "LSM-1", None),
    ]
    assert all(j.seed == 3 and j.args[-2:] == ("--a.b", "7") for j in jobs)
    assert all(("root", str(tmp_path.resolve())) in j.data_args for j in jobs)
    with pytest.raises(ValueError, match="no configs for method"):
        grid.expand(configs, profile, methods=["efficient_ad"])


def test_ambiguous_shared_configs_are_an_error(tmp_path):
    configs = _configs(tmp_path, {"glass": ["a.yaml", "b.yaml"]})
    with pytest.raises(ValueError, match="several modality-independent configs"):
        grid.method_configs(configs)


def test_profiles_load_and_validate(tmp_path):
    smoke = profiles.load_profile("smoke", profiles.default_configs_dir())
    assert smoke.seeds == (0,) and smoke.overrides["trainer.accelerator"] == "cpu"
    paper = profiles.load_profile("paper", tmp_path)  # falls back to the project's profiles
    assert len(paper.seeds) >= 2 and paper.supervised_rows == profiles.SUPERVISED_ROWS
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [1]\nsupervised_rows: [none, mixed-1_16]\ntypo: 1\n")
    with pytest.raises(ValueError, match="unknown keys"):
        profiles.load_profile(str(bad), tmp_path)
    bad.write_text("seeds: [1]\nsupervised_rows: [none, mixed-1_16]\n")
    assert [r.slug for r in profiles.load_profile(str(bad), tmp_path).supervised_rows] == ["none", "mixed-1_16"]
    with pytest.raises(FileNotFoundError, match="profile 'nope' not found"):
        profiles.load_profile("nope", tmp_path)


def test_overrides_pass_through_the_cli_parser():
    from ispad_bench.cli import build_parser

    args, extra = build_parser().parse_known_args(
        ["sweep", "--methods", "glass", "--model.init_args.lr", "0.1", "--trainer.max_epochs=2", "--dry-run"]
    )
    assert args.accepts_overrides and args.methods == ["glass"] and args.dry_run
    assert extra == ["--model.init_args.lr", "0.1", "--trainer.max_epochs=2"]


def test_resolve_keys_the_resolved_config(tiny_root, tmp_path):
    """Key = resolved config (defaults filled in): stable, changed by any setting, blind to output paths."""
    profile = profiles.Profile("t")

    def one(**kw):
        jobs = grid.expand(TEST_CONFIGS, profile, methods=["padim"], modalities=["LSM-1"], data_root=tiny_root, **kw)
        return resolve(jobs[0])

    a, b = one(), one()
    assert a.key == b.key and len(a.key) == 16
    assert a.config["data"]["init_args"]["root"] == str(Path(tiny_root).resolve())
    assert a.config["data"]["init_args"]["modality"] == "LSM-1"  # shared config: set by the sweep
    assert a.config["data"]["init_args"]["seed"] == 0  # sweep seed reaches the datamodule
    assert a.config["model"]["init_args"]["n_features"] == 32
    assert "default_root_dir" not in a.config
    assert one(overrides=["--model.init_args.n_features=16"]).key != a.key
    assert one(seeds=[1]).key != a.key
    # an explicit default value resolves to the same config, hence the same job
    assert one(overrides=["--data.init_args.train_split=reduced"]).key == a.key


def test_contamination_profile_grid_runs_unsupervised_methods_at_every_level(tmp_path):
    configs = _configs(tmp_path, {"glass": ["lsm1.yaml"], "uflow": ["lsm1.yaml"], "supervised": ["default.yaml"]})
    profile = profiles.load_profile("contamination", profiles.default_configs_dir())
    assert profile.skip_supervised and profile.seeds == (0, 1, 2)
    jobs = grid.expand(configs, profile, modalities=["LSM-1"])
    assert {j.method for j in jobs} == {"glass", "uflow"}  # no supervised stream to contaminate
    levels = [a.split("=")[1] for j in jobs if j.method == "glass" for a in j.args if "train_contamination" in a]
    assert levels == [c for c in ("0.0", "0.01", "0.02", "0.05") for _ in range(3)]  # level x seed
