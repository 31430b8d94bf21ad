"""A user's own data in the ISP-AD layout, end to end through a sweep job: the datamodule's
``defect_groups`` reach the evaluator, the record, ``predictions.npz``, the tables and the figures;
the record says what data it ran on; the report compares with the paper only on ISP-AD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from own_data import OWN_GROUPS, RENAMES, own_data

from ispad_bench.cli import main
from ispad_bench import files
from ispad_bench.sweep import records
from ispad_bench.report.write import write_report

CONFIGS = Path(__file__).parent / "sweep_configs"


def _sweep(data: Path, out: Path, *extra: str) -> dict:
    argv = ["sweep", "--configs", str(CONFIGS), "--methods", "padim", "--modalities", "ASM", "--profile", "smoke",
            "--data-root", str(data), "--out", str(out), *extra]
    assert main(argv) == 0
    (path,) = out.rglob(records.RECORD)
    return {**json.loads(path.read_text()), "_dir": path.parent}


@pytest.mark.slow  # two real sweep jobs: ~2 x 15 s on an idle 2-core machine, minutes under load
def test_sweep_on_own_folder_names_gives_the_original_per_group_metrics(synth_root, tmp_path):
    original = _sweep(synth_root, tmp_path / "runs-original", "--no-report")
    own_root = tmp_path / "own"
    own_data(synth_root / "ASM", own_root / "ASM", reduced=True)  # same files, another line's folder names
    own = _sweep(own_root, tmp_path / "runs-own", "--data.init_args.defect_groups", json.dumps(OWN_GROUPS))

    keys = [k for k in original["metrics"] if k.startswith(("recall_", "n_", "tp_", "fn_"))]
    assert {"recall_area", "recall_points", "n_area", "n_points"} <= set(keys)
    assert {k: own["metrics"].get(k) for k in keys} == {k: original["metrics"][k] for k in keys}
    assert not any(k.startswith("recall_" + name) for k in own["metrics"] for name in OWN_GROUPS)
    assert own["metrics"]["image_AUROC"] == original["metrics"]["image_AUROC"]

    with np.load(original["_dir"] / records.PREDICTIONS) as a, np.load(own["_dir"] / records.PREDICTIONS) as b:
        by_image = {Path(p).name + Path(p).parent.name: (g, s) for p, g, s in zip(a["paths"], a["groups"], a["scores"])}
        for path, group, score in zip(b["paths"], b["groups"], b["scores"]):
            old = next((o for o, n in RENAMES.items() if Path(path).parent.name == n), Path(path).parent.name)
            assert by_image[Path(path).name + old] == (group, score)
        assert sorted(set(b["groups"].tolist())) == ["area", "good", "points"]

    # what data each run used (the copy lacks the generator's stream file: it is "other" data)
    assert (original["data"]["kind"], own["data"]["kind"]) == ("generated", "other")
    assert own["data"]["counts"] == original["data"]["counts"]
    assert own["data"]["defect_groups"] == OWN_GROUPS and not own["data"]["matches_paper"]
    assert own["data"]["fingerprint"] != original["data"]["fingerprint"]
    assert not list((own["_dir"] / "anomalib").rglob("*.png"))  # no per-image visualisations by default

    # the reports name the data and show no Δ to the paper
    tables = (tmp_path / "runs-own" / "tables.md").read_text()
    assert "## ASM: unsupervised (paper Table 6) — not ISP-AD (own)" in tables
    assert "No Δ to the paper: these runs used data whose counts differ" in tables and "| Δ " not in tables
    assert (tmp_path / "runs-own" / "figures" / "overlay_asm.png").is_file()
    write_report(tmp_path / "runs-original", figures=False)
    tables = (tmp_path / "runs-original" / "tables.md").read_text()
    assert "## ASM: unsupervised (paper Table 6) — generated data (ispad-bench data synth), not ISP-AD" in tables
    assert "No Δ to the paper: these runs used generated data" in tables and "| Δ " not in tables


# ------------------------------------------------------------------ fast pieces (default run)
def _scores(dataset) -> dict[str, float]:
    """A fixed score per image file (its mean grey value): the same image scores the same under any name."""
    from PIL import Image

    return {p: float(np.asarray(Image.open(p).convert("L")).mean()) for p in dataset.samples.image_path}


def _evaluate(root: Path, mapping) -> dict:
    import torch
    from anomalib.data import ImageBatch

    from ispad_bench.data.datamodule import ISPADDataset
    from ispad_bench.metrics.anomalib import ISPADMetrics

    dataset = ISPADDataset(root, "ASM", "test", defect_groups=mapping)
    scores = _scores(dataset)
    metric = ISPADMetrics(pixel=False)
    for start in range(0, len(dataset.samples), 8):  # batches as the test loop gives them
        rows = dataset.samples.iloc[start : start + 8]
        metric.update(ImageBatch(image=torch.zeros(len(rows), 3, 4, 4), gt_label=torch.tensor(rows.label_index.values),
                                 pred_score=torch.tensor([scores[p] for p in rows.image_path]),
                                 image_path=list(rows.image_path)))
    return metric.compute()


def test_group_mapping_reaches_the_evaluator(synth_root, tmp_path):
    own = own_data(synth_root / "ASM", tmp_path / "own" / "ASM")
    original, renamed = _evaluate(synth_root, None), _evaluate(own.parent, OWN_GROUPS)
    assert {"recall_area", "recall_points", "n_area", "n_points"} <= set(renamed)
    # every metric, per group included; the cross-fit halves are a seeded draw over the images in
    # path order, which renaming the folders changes, so those metrics are compared by presence only
    exact = lambda m: {k: v for k, v in m.items() if not k.endswith("_crossfit")}  # noqa: E731
    assert exact(renamed) == exact(original)
    assert set(renamed) == set(original)
    assert not any(name in key for key in renamed for name in OWN_GROUPS)
    unmapped = _evaluate(own.parent, {"break": "area"})  # other folders: their own groups, as documented
    assert unmapped["n_area"] == 1 and "recall_blowhole" in unmapped


def test_prediction_store_and_figure_columns_follow_the_groups(synth_root, tmp_path):
    from ispad_bench.data.datamodule import ISPADDataset
    from ispad_bench.sweep.callbacks import PredictionCollector, pick_per_group
    from ispad_bench.report.figures import overlay_columns

    own = own_data(synth_root / "ASM", tmp_path / "own" / "ASM")
    paths = list(ISPADDataset(own.parent, "ASM", "test", defect_groups=OWN_GROUPS).samples.image_path)
    collector = PredictionCollector()
    collector.paths, collector.scores, collector.labels = paths, [0.0] * len(paths), [0] * len(paths)
    groups = dict(zip(paths, collector.arrays()["groups"].tolist()))
    assert {g for p, g in groups.items() if Path(p).parent.name in OWN_GROUPS} == {"area", "points"}
    picked = pick_per_group(paths, 2)  # 2 per group, each from another folder of the group
    assert sorted(groups[p] for p in picked) == ["area", "area", "good", "good", "points", "points"]
    assert len({Path(p).parent.name for p in picked if groups[p] != "good"}) == 4
    # five defect folders, six columns: fault-free first, then the groups and their folders in turn
    columns = overlay_columns(paths, groups, 6)
    assert [groups[c] for c in columns] == ["good", "area", "points", "good", "area", "points"]
    assert len({Path(c).parent.name for c in columns if groups[c] != "good"}) == 4


def test_data_description(synth_root, tmp_path):
    from ispad_bench.data.fingerprint import describe_folder, matches_paper
    from ispad_bench.data.modality import Modality

    generated = describe_folder(synth_root, synth_root / "ASM", "ASM")
    assert generated["kind"] == "generated" and generated["generated"]["patches"] == 20
    own = own_data(synth_root / "ASM", tmp_path / "own" / "ASM")
    first = describe_folder(own.parent, own, "ASM", OWN_GROUPS)
    assert first["kind"] == "other" and first["counts"] == {**generated["counts"], "train_reduced": 0}
    image = next((own / "test" / "good").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert describe_folder(own.parent, own, "ASM", OWN_GROUPS)["fingerprint"] != first["fingerprint"]
    table7 = Modality.ASM.splits
    assert matches_paper({"train": table7.unsup_train_good, "test_good": table7.test_good,
                          "test_area": table7.test_area, "test_points": table7.test_points}, "ASM")


def test_report_shows_delta_only_for_ispad(tmp_path):
    from ispad_bench.report import tables as report

    metrics = {"image_AUROC": 0.9, "MCC": 0.5, "recall": 0.8, "precision": 0.5, "FPR": 0.1}
    for method, kind in (("glass", "ispad"), ("uflow", None)):
        rec = {"schema": records.SCHEMA, "status": "ok", "key": method, "method": method, "modality": "ASM", "seed": 0,
               "row": None, "profile": "paper", "metrics": metrics, "finished": "2026-01-01T00:00:00",
               **({"data": {"kind": kind, "root": "/d/ISP-AD"}} if kind else {})}
        files.write_json(tmp_path / "a" / method / records.RECORD, rec)
        files.write_json(tmp_path / "b" / method / records.RECORD,
                           {**rec, "data": {"kind": "other", "root": "/data/my-line"}})
    df, _ = report.summarise(tmp_path / "a")
    assert df.mcc_delta.notna().all()  # ISP-AD and an older record without a data entry: compared
    text = report.to_markdown(df, [])
    assert "## ASM: unsupervised (paper Table 6)\n" in text and "| Δ AUROC |" in text
    df, _ = report.summarise(tmp_path / "b")
    assert df.mcc_delta.isna().all() and df.mcc_paper.isna().all()
    text = report.to_markdown(df, [])
    assert "## ASM: unsupervised (paper Table 6) — not ISP-AD (my-line)" in text
    assert "No Δ to the paper" in text and "Δ AUROC" not in text
