"""Sweep overrides: a global key goes to the methods whose config accepts it and is skipped, with a
note, for the others; a key no method accepts is an error; ``--<method>.key`` / ``--override``
scope one to a method."""

from __future__ import annotations

from pathlib import Path

import pytest

from ispad_bench.cli import main
from ispad_bench.sweep.overrides import Override, for_sweep, parse_tokens

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = {"efficient_ad", "uflow", "glass", "ddad", "supervised"}


def test_tokens_global_scoped_and_explicit():
    tokens = ["--data.init_args.train_split", "full", "--trainer.max_epochs=3", "--glass.model.init_args.lr", "1e-4"]
    assert parse_tokens(tokens, ["ddad:model.init_args.image_size=64"], METHODS) == [
        Override("data.init_args.train_split", "full"),
        Override("trainer.max_epochs", "3"),
        Override("model.init_args.lr", "1e-4", "glass"),
        Override("model.init_args.image_size", "64", "ddad"),
    ]
    with pytest.raises(ValueError, match="expected METHOD:KEY=VALUE"):
        parse_tokens([], ["glass-model.init_args.lr"], METHODS)
    with pytest.raises(ValueError, match="no method 'patchcore' in this sweep"):
        parse_tokens([], ["patchcore:model.init_args.lr=1"], METHODS)


def test_global_override_fits_each_method():
    plan = for_sweep(CONFIGS, None, ["ASM"], ["--data.init_args.train_split", "full", "--trainer.max_epochs=2"], None)
    for method in ("efficient_ad", "uflow", "glass", "ddad"):
        assert plan.args[method] == ["--data.init_args.train_split=full", "--trainer.max_epochs=2"]
    assert plan.args["supervised"] == ["--trainer.max_epochs=2"]
    assert plan.notes == ["supervised: skips --data.init_args.train_split=full (ISPADSupervised has no 'train_split')"]


def test_scoped_override_reaches_one_method_only():
    plan = for_sweep(CONFIGS, ["glass", "uflow"], ["LSM-1"], ["--glass.model.init_args.lr", "1e-4"], None)
    assert plan.args == {"glass": ["--model.init_args.lr=1e-4"], "uflow": []} and plan.notes == []


def test_key_no_method_accepts_is_an_error():
    with pytest.raises(ValueError, match="no method of this sweep accepts 'data.init_args.trian_split'"):
        for_sweep(CONFIGS, None, None, ["--data.init_args.trian_split", "full"], None)
    with pytest.raises(ValueError, match="method uflow does not accept 'data.init_args.real_group'"):
        for_sweep(CONFIGS, None, None, [], ["uflow:data.init_args.real_group=area"])
    with pytest.raises(ValueError, match="method glass is not selected in this sweep"):
        for_sweep(CONFIGS, ["uflow"], None, ["--glass.model.init_args.lr", "1e-4"], None)


def test_sweep_cli_reports_skips_and_errors(tmp_path, capsys):
    argv = ["sweep", "--methods", "uflow,supervised", "--profile", "smoke", "--dry-run", "--modalities", "ASM", "--configs", str(CONFIGS),
            "--out", str(tmp_path)]
    assert main([*argv, "--data.init_args.train_split", "full"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "supervised: skips --data.init_args.train_split=full (ISPADSupervised has no 'train_split')" in err
    assert main([*argv, "--data.init_args.trian_split", "full"]) == 2
    assert "no method of this sweep accepts 'data.init_args.trian_split'" in " ".join(capsys.readouterr().err.split())
    assert main([*argv, "--trainer.max_epochz", "1"]) == 2  # not a model/data key: the parser's error
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(".yaml)") and not last.endswith(": 2")


def test_out_of_range_arguments_are_refused_before_any_job_with_the_reason(tmp_path, capsys):
    """Was: --dry-run accepted them and each job failed after its start with jsonargparse's union wrapper
    ("Does not validate against any of the Union subtypes ... Errors: )"), the reason only in record.json."""
    argv = ["sweep", "--profile", "smoke", "--modalities", "LSM-2", "--configs", str(CONFIGS), "--out", str(tmp_path)]
    assert main([*argv, "--methods", "glass", "--dry-run", "--glass.model.init_args.radius_quantile", "2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "glass LSM-2 seed 0: GlassISPAD: radius_quantile must be a finite number in [0, 1], got 2.0" in err
    assert "Union" not in err
    assert main([*argv, "--methods", "supervised", "--rows", "none", "--data.init_args.injection_p", "2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "supervised LSM-2 none seed 0:" in err and "injection_p" in err and "nothing ran" in err
    assert not list(tmp_path.rglob("record.json"))  # no job started


def test_one_line_reduces_jsonargparse_union_wrapper_to_its_reason():
    """The sweep's records and progress lines use one_line: the same reason `anomalib train` prints."""
    from ispad_bench.errors import one_line

    wrapped = ValueError("Does not validate against any of the Union subtypes\nSubtypes: [NoneType, X]\nErrors:\n"
                         "  - Expected a <class 'NoneType'>\n  - GlassISPAD: lr must be > 0, got -1\n"
                         "Given value type: <class 'Namespace'>\nGiven value: Namespace(...)")
    assert one_line(wrapped) == "GlassISPAD: lr must be > 0, got -1"
    assert one_line(ValueError("a\nb")) == "a | b"


def test_an_override_cannot_relabel_a_supervised_row(tmp_path, capsys):
    """Was: `--rows none --data.init_args.real_fraction 1` trained on real defects and the table said Fraction 0."""
    argv = ["sweep", "--profile", "smoke", "--modalities", "LSM-2", "--configs", str(CONFIGS), "--out", str(tmp_path),
            "--methods", "supervised", "--rows", "none", "--dry-run"]
    for key, value in (("real_fraction", "1"), ("real_group", "area"), ("real_only", "true")):
        assert main([*argv, f"--data.init_args.{key}", value]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"--data.init_args.{key} would relabel supervised's rows" in err and "--rows" in err
    assert main([*argv, "--data.init_args.injection_p", "0.5"]) == 0  # other data keys still pass


def test_bad_option_values_and_a_missing_data_root_are_refused_once(tmp_path, capsys):
    """Was: --job-timeout -5 / 0 and --maps-per-group -1 accepted; a missing --data-root failed each job ~40 s in."""
    argv = ["sweep", "--profile", "smoke", "--modalities", "LSM-2", "--configs", str(CONFIGS), "--out", str(tmp_path),
            "--methods", "padim,uflow"]
    for option, value, reason in (("--job-timeout", "-5", "expected a number > 0, got '-5'"),
                                  ("--job-timeout", "0", "expected a number > 0, got '0'"),
                                  ("--maps-per-group", "-1", "expected an integer >= 0, got '-1'")):
        with pytest.raises(SystemExit) as info:
            main([*argv, option, value])
        assert info.value.code == 2 and f"argument {option}: {reason}" in capsys.readouterr().err
    missing = tmp_path / "no-such-root"
    assert main([*argv, "--data-root", str(missing)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count(f"data root {missing} (padim, uflow) is not a folder") == 1 and "data synth" in err
    assert not list(tmp_path.rglob("record.json"))
    assert main([*argv, "--data-root", str(missing), "--dry-run"]) == 0  # a warning when only listing


def test_ctrl_c_prints_one_line_and_how_to_resume(monkeypatch, capsys):
    from ispad_bench.sweep import cli as sweep_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_cli, "main_sweep", interrupted)
    assert main(["sweep", "--profile", "smoke"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "ispad-bench sweep: interrupted; finished jobs are kept: rerun the same command to resume"


def test_a_test_split_without_defects_is_refused_before_training(tmp_path, capsys):
    """Was: every job trained, then failed at its test (a 262-line traceback under `anomalib train`)."""
    import shutil

    from conftest import write_tiny_tree

    root = write_tiny_tree(tmp_path / "data", modalities=("LSM-2",))
    for folder in (root / "LSM-2" / "test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    argv = ["sweep", "--profile", "smoke", "--modalities", "LSM-2", "--configs", str(CONFIGS), "--out",
            str(tmp_path / "runs"), "--methods", "padim", "--data-root", str(root), "--skip-weights-check"]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"sweep: {root / 'LSM-2' / 'test'} holds no defect folder with images" in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("record.json"))
