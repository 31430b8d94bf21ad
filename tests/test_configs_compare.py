"""``ispad-bench configs compare``: the authors' config files (four formats) beside the harness's configs."""

from __future__ import annotations

import json

from ispad_bench.cli import main


def test_compare_lists_every_differing_key_in_each_format(tmp_path, capsys):
    folder = tmp_path / "record"
    (folder / "ddad").mkdir(parents=True)
    (folder / "ddad" / "LSM-1_config.yaml").write_text(  # the official DDAD config.yaml shape
        "data:\n  image_size: 256\n  batch_size: 32\n  DA_batch_size: 16\nmodel:\n  epochs: 3000\n  load_chp: 1500\n"
        "  learning_rate: 3e-4\n  w: 3\n")
    (folder / "run-glass-asm.sh").write_text(  # GLASS run script arguments
        "python main.py --gpu 0 --seed 0 --meta_epochs 640 --eval_epochs 1 --lr 0.0001 \\\n"
        "  net -b wide_resnet50_2 -le layer2 -le layer3 --limit 392 dataset --batch_size 8 --resize 256 mvtec\n")
    (folder / "uflow_lsm2.yaml").write_text(  # Anomalib YAML
        "trainer:\n  max_epochs: 200\nmodel:\n  class_path: x.Uflow\n  init_args:\n    image_size: 448\n")
    (folder / "efficient_ad-LSM-2.json").write_text(json.dumps({"trainer": {"max_steps": 70000, "max_epochs": 300}}))
    assert main(["configs", "compare", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "model.init_args.test_checkpoint: theirs 1500, ours 2000" in out
    assert "data.init_args.train_batch_size: theirs 32, ours 8" in out and "model.init_args.lr: theirs 0.0003" in out
    assert "diffusion_steps" not in out and "da_batch_size" not in out  # equal values are not listed
    assert "trainer.max_epochs: theirs 640, ours 160" in out and "model.init_args.lr: theirs 0.0001, ours 5e-05" in out
    assert "model.init_args.layers: theirs ['layer2', 'layer3']" in out
    assert "uflow_lsm2.yaml: 1 key(s) differ" in out and "trainer.max_epochs: theirs 200, ours 300" in out
    assert "efficient_ad-LSM-2.json: 0 key(s) differ (same as the harness)" in out


def test_compare_names_the_file_that_cannot_be_read(tmp_path, capsys):
    (tmp_path / "glass_lsm1.yaml").write_text("model: [unclosed\n")
    (tmp_path / "notes.yaml").write_text("a: 1\n")
    assert main(["configs", "compare", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "glass_lsm1.yaml: skipped:" in out and "not valid YAML" in out
    assert "notes.yaml: skipped:" in out and "--method and --modality" in out
