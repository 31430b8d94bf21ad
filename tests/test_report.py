"""Report tables from known records: means, sample stds, Δ to the paper, bold best row, figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ispad_bench import files
from ispad_bench.report import tables as report
from ispad_bench.report.figures import roc_points, write_figures
from ispad_bench.report.write import write_report
from ispad_bench.sweep import records


def _record(root: Path, method, modality, seed, metrics, row=None, status="ok", finished="2026-01-01T00:00:00", **extra):
    folder = root / method / modality / f"{row or ''}s{seed}-{finished[:4]}"
    rec = {"schema": records.SCHEMA, "status": status, "key": f"{method}{modality}{row}{seed}", "method": method,
           "modality": modality, "seed": seed, "row": row, "profile": "paper", "metrics": metrics,
           "timing": {"test_images_per_s": 10.0 + seed}, "finished": finished, **extra}
    files.write_json(folder / records.RECORD, rec)
    return folder


UNSUP = {  # GLASS on LSM-1, three seeds
    0: {"image_AUROC": 0.990, "MCC": 0.80, "recall": 0.90, "precision": 0.80, "FPR": 0.010, "pixel_AUROC": 0.98,
        "PRO": 0.10, "AUPRO": 0.30},
    1: {"image_AUROC": 0.980, "MCC": 0.84, "recall": 0.92, "precision": 0.84, "FPR": 0.012, "pixel_AUROC": 0.97,
        "PRO": 0.12, "AUPRO": 0.32},
    2: {"image_AUROC": 0.970, "MCC": 0.86, "recall": 0.94, "precision": 0.86, "FPR": 0.014, "pixel_AUROC": 0.99,
        "PRO": 0.14, "AUPRO": 0.34},
}


@pytest.fixture
def runs(tmp_path):
    for seed, m in UNSUP.items():
        _record(tmp_path, "glass", "LSM-1", seed, m)
    _record(tmp_path, "uflow", "LSM-1", 0, {**UNSUP[0], "MCC": 0.70})
    # a stale run of the same slot (config changed since): the later one counts
    _record(tmp_path, "uflow", "LSM-1", 0, {**UNSUP[0], "MCC": 0.10}, finished="2025-01-01T00:00:00")
    for seed, (tn, tp, fn, fp) in enumerate([(1460, 74, 21, 10), (1462, 76, 19, 8)]):
        m = {"MCC": 0.80 + seed * 0.02, "recall": tp / 95, "FPR": fp / 1470, "TN": tn, "TP": tp, "FN": fn, "FP": fp}
        _record(tmp_path, "supervised", "LSM-1", seed, m, row="none", real_defects={"count": 0, "ids": []})
        m2 = {**m, "MCC": 0.95}
        _record(tmp_path, "supervised", "LSM-1", seed, m2, row="mixed-1_16", real_defects={"count": 10, "ids": ["x"] * 10})
    _record(tmp_path, "ddad", "ASM", 0, {}, status="failed", error={"kind": "oom", "message": "CUDA out of memory"})
    return tmp_path


def test_paper_supervised_fractions():
    ps = report.paper_supervised()
    lsm1 = ps[ps.modality == "LSM-1"]
    assert [str(f) for f in lsm1.fraction] == ["0", "1/16", "1/16", "1/16", "1/8", "1/4", "1/2", "1"]
    asm = ps[ps.modality == "ASM"]
    assert [str(f) for f in asm.fraction] == ["0", "1/16", "1/16", "1/16", "1/8", "1/4", "1/2", "1"]


def test_unsupervised_means_stds_and_deltas(runs):
    df, failed = report.summarise(runs)
    glass = df[(df.method == "GLASS") & (df.modality == "LSM-1")].iloc[0]
    assert glass.seeds == 3
    mcc = [0.80, 0.84, 0.86]
    assert glass.mcc_mean == pytest.approx(np.mean(mcc))
    assert glass.mcc_std == pytest.approx(np.std(mcc, ddof=1))  # sample std: 0.030550...
    assert glass.mcc_std == pytest.approx(0.0305505, abs=1e-6)
    assert glass.mcc_paper == 0.89 and glass.mcc_delta == pytest.approx(np.mean(mcc) - 0.89)
    assert glass.image_auroc_mean == pytest.approx(98.0) and glass.image_auroc_std == pytest.approx(1.0)
    assert glass.image_auroc_delta == pytest.approx(98.0 - 99.5)  # percentage points
    assert glass.fpr_mean == pytest.approx(1.2) and glass.fpr_delta == pytest.approx(0.2)
    assert glass.pro_delta == pytest.approx(12.0 - 13.0)
    assert glass.aupro_mean == pytest.approx(32.0) and pd.isna(glass.aupro_paper)  # not published
    assert glass.images_per_s_mean == pytest.approx(11.0)
    uflow = df[df.method == "U-Flow"].iloc[0]
    assert uflow.seeds == 1 and uflow.mcc_mean == pytest.approx(0.70) and pd.isna(uflow.mcc_std)
    assert uflow.mcc_delta == pytest.approx(0.70 - 0.77)
    assert glass.best and not uflow.best
    assert [r["method"] for r in failed] == ["ddad"]


def test_supervised_rows_match_tables_2_3(runs):
    df, _ = report.summarise(runs)
    sup = df[df.table == "supervised"]
    assert list(sup.row) == ["none", "mixed-1_16"]
    none, mixed = sup.iloc[0], sup.iloc[1]
    assert none.group == "-" and none.n_real == 0 and none.n_real_paper == 0
    assert none.tn_mean == pytest.approx(1461) and none.tn_delta == pytest.approx(1461 - 1459)
    assert none.fp_std == pytest.approx(np.std([10, 8], ddof=1))
    assert none.recall_mean == pytest.approx(100 * 75 / 95) and none.recall_delta == pytest.approx(100 * 75 / 95 - 76.8)
    assert mixed.n_real == 10 and mixed.n_real_paper == 10 and mixed.mcc_delta == pytest.approx(0.95 - 0.91)
    assert mixed.best and not none.best


def test_written_tables(runs, tmp_path):
    paths = write_report(runs, tmp_path / "out", figures=False)
    md = paths["md"].read_text()
    assert "## LSM-1: unsupervised (paper Table 4)" in md and "## LSM-1: supervised (paper Table 2)" in md
    glass_line = next(line for line in md.splitlines() if "GLASS" in line)
    assert glass_line.startswith("| **GLASS** | **3** |") and "**0.83 ± 0.03**" in glass_line and "**-0.06**" in glass_line
    assert "| U-Flow | 1 | 99.0 | +3.1 | 0.70 | -0.07 |" in md
    assert "Failed jobs" in md and "oom: CUDA out of memory" in md
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == 4 and set(csv.table) == {"unsupervised", "supervised"}
    tex = paths["tex"].read_text()
    assert r"\textbf{GLASS}" in tex and r"$\pm$" in tex and r"\begin{tabular}" in tex and "%)" not in tex.replace(r"\%)", "")


def test_committed_paper_tables_are_up_to_date():
    """results/paper/tables.md is what `ispad-bench report --paper` renders from the package's CSVs."""
    committed = Path(__file__).resolve().parents[1] / "results" / "paper" / "tables.md"
    assert committed.read_text() == report.paper_markdown(), f"{committed}: rerun `ispad-bench report --paper`"
    assert "## Table 4: LSM-1, unsupervised methods" in committed.read_text()


def test_roc_points_match_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # ties included
    labels = rng.integers(0, 2, 200)
    fpr, tpr = roc_points(scores, labels)
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores))


def test_figures_from_stored_predictions(tmp_path):
    rng = np.random.default_rng(0)
    paths = ["/d/good/000.png", "/d/pinhole/000.png", "/d/squeegee_stroke/000.png"]
    for method in ("glass", "uflow"):
        folder = _record(tmp_path, method, "ASM", 0, {"threshold": 0.5, "MCC": 0.5})
        arrays = {"paths": np.array(paths * 3), "scores": rng.random(9), "labels": np.array([0, 1, 1] * 3, np.int8),
                  "groups": np.array(["good", "points", "area"] * 3), "map_paths": np.array(sorted(paths))}
        for i, _ in enumerate(sorted(paths)):
            arrays[f"map_{i}"] = rng.random((32, 32)).astype(np.float16)
            arrays[f"image_{i}"] = rng.integers(0, 255, (32, 32), dtype=np.uint8)
            arrays[f"mask_{i}"] = np.zeros((32, 32), np.uint8)
        files.write_npz(folder / records.PREDICTIONS, **arrays)
    written = write_figures(tmp_path, tmp_path / "figures")
    assert set(written) == {"overlay_asm", "roc_asm"}
    for path in written.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert json.loads((tmp_path / "glass" / "ASM" / "s0-2026" / "record.json").read_text())["method"] == "glass"


# ------------------------------------------------------------------------------ intervals and significance
def _job_with_bootstrap(root: Path, method: str, scores, labels, seed=0, row=None, contamination=0.0):
    """A record as a sweep job leaves it: metrics, bootstrap.npz + uncertainty, predictions.npz."""
    from ispad_bench.metrics import bootstrap
    from ispad_bench.metrics.anomalib import DISPLAY_NAMES
    from ispad_bench.sweep.job import save_bootstrap
    from ispad_bench.sweep.records import BOOTSTRAP

    paths = [f"/d/test/{'area' if y else 'good'}/{i:03d}.png" for i, y in enumerate(labels)]
    groups = ["area" if y else "good" for y in labels]
    boot = bootstrap(scores, labels, groups=groups, ids=paths, n=400, seed=0)
    metrics = {DISPLAY_NAMES.get(k, k): v for k, v in boot.estimate.items()}
    folder = _record(root, method, "LSM-1", seed, metrics, row=row, finished=f"2026-01-01T00:00:{seed:02d}",
                     config={"data": {"init_args": {"train_contamination": contamination}}},
                     artifacts={"predictions": records.PREDICTIONS, "bootstrap": BOOTSTRAP})
    uncertainty = save_bootstrap(folder, boot)
    rec = files.read_json(folder / records.RECORD)
    files.write_json(folder / records.RECORD, {**rec, "uncertainty": uncertainty})
    files.write_npz(folder / records.PREDICTIONS, paths=np.array(paths), scores=np.asarray(scores, float),
                      labels=np.asarray(labels, np.int8))
    return boot


def test_intervals_marks_csv_bounds_and_html(tmp_path):
    from html.parser import HTMLParser

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30, bool), np.zeros(120, bool)]
    base = labels * 1.5 + rng.normal(size=150)
    best = _job_with_bootstrap(tmp_path, "glass", base, labels)
    _job_with_bootstrap(tmp_path, "uflow", base + rng.normal(0, 0.05, 150), labels)  # a near-twin of the best
    _job_with_bootstrap(tmp_path, "ddad", rng.normal(size=150), labels)  # chance
    for seed in (0, 1):  # two seeds: the interval of the seed-pooled mean
        _job_with_bootstrap(tmp_path, "efficient_ad", base + rng.normal(0, 1.0, 150), labels, seed=seed)
    df, _ = report.summarise(tmp_path)
    rows = {r.method_id: r for _, r in df.iterrows()}
    lo, hi = best.interval("mcc")
    assert (rows["glass"].mcc_lower, rows["glass"].mcc_upper) == (lo, hi)
    assert rows["glass"].mcc_lower <= rows["glass"].mcc_mean <= rows["glass"].mcc_upper
    assert rows["glass"].best and rows["uflow"].mcc_mark == "†" and rows["ddad"].mcc_mark == ""
    # one twin is the best by AUROC, the other within it (DeLong p >= 0.05); chance is not
    assert {rows["glass"].image_auroc_mark, rows["uflow"].image_auroc_mark} == {"", "†"}
    assert rows["ddad"].image_auroc_p_delong < 0.05 and rows["ddad"].image_auroc_mark == ""
    for row, shift in (("none", 0.3), ("mixed-1_16", 3.0)):  # supervised: a clear gain over the cold start
        _job_with_bootstrap(tmp_path / row, "supervised", labels * shift + rng.normal(size=150), labels, row=row)
    df, _ = report.summarise(tmp_path)
    rows = {(r.method_id, r.row if isinstance(r.row, str) else None): r for _, r in df.iterrows()}
    assert rows[("supervised", "mixed-1_16")].mcc_p_none < 0.05 and "*" in rows[("supervised", "mixed-1_16")].mcc_mark
    rows = {k[0]: r for k, r in rows.items() if k[1] is None}
    ea = rows["efficient_ad"]
    assert ea.seeds == 2 and ea.mcc_lower < ea.mcc_mean < ea.mcc_upper
    paths = write_report(tmp_path, tmp_path / "out")
    md = paths["md"].read_text()
    glass_line = next(line for line in md.splitlines() if "GLASS" in line)
    assert f"{100 * best.estimate['image_auroc']:.1f} [{100 * best.interval('image_auroc')[0]:.1f}, " in glass_line
    assert "MCC cf" in md and "±" in next(line for line in md.splitlines() if "EfficientAD" in line)
    csv = pd.read_csv(paths["csv"])
    assert {"mcc_lower", "mcc_upper", "mcc_cf_mean", "mcc_cf_lower", "image_auroc_p_delong"} <= set(csv.columns)
    assert r"$^\dagger$" in paths["tex"].read_text()

    class Tables(HTMLParser):
        tables, images = 0, 0

        def handle_starttag(self, tag, attrs):
            self.tables += tag == "table"
            self.images += tag == "img" and dict(attrs)["src"].startswith("data:image/png;base64,")

    page = paths["html"].read_text()
    parser = Tables()
    parser.feed(page)
    assert parser.tables == md.count("\n## ") and parser.images >= 1
    assert "How to read this" in page and "http" not in page.replace("http-equiv", "")


def test_contamination_rows_and_figure(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(20, bool), np.zeros(80, bool)]
    for c, shift in ((0.0, 2.0), (0.02, 1.5), (0.05, 1.0)):
        _job_with_bootstrap(tmp_path / f"c{c}", "glass", labels * shift + rng.normal(size=100), labels, contamination=c)
    df, _ = report.summarise(tmp_path)
    assert sorted(df.contamination) == [0.0, 0.02, 0.05] and "GLASS (contamination 0.05)" in set(df.method)
    paths = write_report(tmp_path, tmp_path / "out")
    assert paths["contamination"].stat().st_size > 10_000


def test_report_names_an_unreadable_record_marks_its_row_and_exits_non_zero(runs, capsys):
    """A truncated record.json was dropped silently (exit 0, the uflow row gone); now it is named and listed."""
    from types import SimpleNamespace

    from ispad_bench.report.cli import main_report

    uflow = next(p for p in runs.rglob(records.RECORD) if "uflow" in str(p) and "2026" in p.parent.name)
    files.write_json(uflow.parent / records.SPEC, {"method": "uflow", "modality": "LSM-1", "seed": 0, "row": None,
                                                   "profile": "paper"})
    uflow.write_text(uflow.read_text()[:40])  # truncated mid-write by something other than the sweep
    args = SimpleNamespace(runs_dir=runs, out=None, no_figures=True, paper=False)
    assert main_report(args) == 1
    err = capsys.readouterr().err
    assert str(uflow) in err and "is not valid JSON" in err and "1 record(s) could not be used" in err
    md = (runs / "tables.md").read_text()
    failed = md[md.index("## Failed jobs"):]
    assert "| uflow | LSM-1 |  | 0 | unreadable record:" in failed and str(uflow.parent) in failed
    # the stale uflow run of the same slot (finished 2025) must not stand in for the unreadable newer one
    tables_part = md[: md.index("## Failed jobs")]
    assert "GLASS" in tables_part and "U-Flow" not in tables_part


def test_report_says_when_a_run_on_another_data_root_replaced_one(tmp_path):
    """Was: the same method on another data root into the same folder silently replaced the table's row."""
    cfg = lambda root: {"data": {"init_args": {"root": root}}}  # noqa: E731
    _record(tmp_path, "glass", "LSM-1", 0, UNSUP[0], finished="2025-01-01T00:00:00", config=cfg("/data/ispad"))
    _record(tmp_path, "glass", "LSM-1", 0, UNSUP[1], finished="2026-01-01T00:00:00", config=cfg("/data/my-line"))
    _record(tmp_path, "uflow", "LSM-1", 0, UNSUP[2], config=cfg("/data/ispad"))
    write_report(tmp_path, figures=False)
    md = (tmp_path / "tables.md").read_text()
    assert ("- glass LSM-1 seed 0: the tables show the run on /data/my-line; this folder also holds a run on "
            "/data/ispad") in md
    assert "uflow LSM-1 seed 0: the tables show" not in md
    assert "Runs on another data root" in (tmp_path / "report.html").read_text()


def test_forest_plot_per_modality_is_written_and_embedded(tmp_path):
    """report.html and figures/ get one forest plot per modality (MCC and image AUROC with intervals)."""
    from ispad_bench.report.forest import forest_figure

    for method, scores in (("glass", [0.9, 0.8, 0.7, 0.2, 0.1, 0.3]), ("uflow", [0.6, 0.5, 0.55, 0.4, 0.45, 0.5])):
        _job_with_bootstrap(tmp_path, method, np.array(scores), np.array([1, 1, 1, 0, 0, 0]))
    paths = write_report(tmp_path)
    assert paths["forest_lsm1"] == tmp_path / "figures" / "forest_lsm1.png"
    assert paths["forest_lsm1"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'alt="forest_lsm1"' in (tmp_path / "report.html").read_text()
    df, _ = report.summarise(tmp_path)
    assert forest_figure(df, "ASM", tmp_path / "none.png") is None  # no rows: no figure


def test_html_puts_the_paper_columns_first_and_folds_the_rest(runs, tmp_path):
    """Per-group recall columns in the unsupervised tables; report.html folds non-paper columns (CSS, no script)."""
    df, _ = report.summarise(runs)
    (title, header, body, _, extra), *_ = report.rendered(df)
    assert "Recall-area (%)" in header and "Recall-points (%)" in header
    first_extra = extra.index(True)
    assert not any(extra[:first_extra]) and all(extra[first_extra:])  # paper columns, then the rest
    assert header[:3] == ["Method", "n", "AUROC (%)"] and "MCC cf" in header[first_extra:]
    write_report(runs, figures=False)
    page = (runs / "report.html").read_text()
    assert 'id="all-columns"' in page and '<th class="x">MCC cf</th>' in page and "<script" not in page


def test_table_notes_say_how_many_test_defects_were_unreachable(tmp_path):
    """evaluate() counts defective images whose mask is empty after the geometry; the report's notes say it."""
    from ispad_bench.metrics import evaluate

    masks = np.zeros((4, 8, 8), np.uint8)
    masks[2, 2:4, 2:4] = 1  # image 3 is defective but its mask is empty (its defect was cropped away)
    with pytest.warns(RuntimeWarning, match="1 defective image"):
        result = evaluate(np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1]), np.random.rand(4, 8, 8), masks)
    assert result["n_unreachable"] == 1
    _record(tmp_path, "glass", "ASM", 0, {**UNSUP[0], "n_unreachable": 1})
    write_report(tmp_path, figures=False)
    assert "- GLASS: 1 test defect image(s) keep no defect pixel after its crop/resize" in (tmp_path / "tables.md").read_text()
