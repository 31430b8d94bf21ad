"""The package's shape: no import circle, no module importing another's private name, a report that
needs only the records, and job keys that a refactor must never change (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "ispad_bench"
HEAVY = {"anomalib", "lightning", "torch", "torchvision", "timm"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported module, imported names, line) of every import in a module, module- or function-level."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # ``from pkg import module``
                    yield sub, [], node.lineno
                else:
                    yield base, [alias.name], node.lineno


def _graph():
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    external: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for name, path in modules.items():
        for target, names, line in _imports(name, path, modules):
            if target == PACKAGE or target.startswith(f"{PACKAGE}."):
                if target in modules and target != name:
                    edges[name].add(target)
                private += [f"{path.relative_to(SRC)}:{line}: imports {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__") and target != name]
            else:
                external[name].add(target.split(".")[0])
    return modules, edges, external, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _closure(start: list[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(edges[m])
    return seen


def test_no_import_circle_and_no_private_import():
    _, edges, _, private = _graph()
    assert _cycles(edges) == []
    assert private == []


def test_the_checks_see_a_circle_and_a_private_import():
    """The walker itself: a made-up circle is found, and so is a private name."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from ispad_bench.sweep.grid import _secret\nif TYPE_CHECKING:\n    import torch\n")
    found = [n for n in _runtime_nodes(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(n) for n in found] == ["from ispad_bench.sweep.grid import _secret"]


def test_report_needs_only_the_records():
    """Every module the report imports, at any depth, imports no anomalib, lightning or torch."""
    modules, edges, external, _ = _graph()
    report = [m for m in modules if m.startswith(f"{PACKAGE}.report")]
    reached = _closure(report, edges)
    heavy = {m: sorted(external[m] & HEAVY) for m in reached if external[m] & HEAVY}
    assert heavy == {}
    assert not any(m.startswith(f"{PACKAGE}.models") for m in reached)


def test_layers_point_down():
    """data imports no models/metrics/sweep/report; models and metrics no sweep/report; the sweep no
    report except its CLI (the sweep writes the report at the end)."""
    _, edges, _, _ = _graph()
    rules = {"data": ("models", "metrics", "sweep", "report"), "models": ("sweep", "report"),
             "metrics": ("models", "sweep", "report"), "sweep": ("report",)}
    wrong = []
    for module, targets in edges.items():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] not in rules or parts[-1] == "cli":
            continue
        wrong += [f"{module} -> {t}" for t in targets if t.split(".")[1] in rules[parts[1]]]
    assert wrong == []


# Keys of smoke/paper/official jobs before the package was reorganised: a user's finished sweep
# must be found again after any refactor (data root fixed, so the keys do not depend on the machine).
# A change of procedure changes keys on purpose (issue 20: DDAD's official loaders and checkpoint rule).
PINNED = {
    ("smoke", "efficient_ad", "LSM-1", 0): "3efed9da41e76bf1",
    ("smoke", "uflow", "ASM", 0): "f42171080023cf79",
    ("smoke", "glass", "LSM-2", 0): "c056219b577dceeb",
    ("smoke", "ddad", "ASM", 0): "60c16631b7fe62d6",  # issue 20: DDAD as the official code (new procedure, new keys)
    ("smoke", "patchcore", "LSM-1", 0): "58742b24d13e9e5d",
    ("paper", "glass", "ASM", 1): "fb43690bfbbe6463",
    ("paper", "efficient_ad", "LSM-2", 2): "436078601c9e150e",
    ("official", "ddad", "LSM-1", 0): "11f20c4d37440389",  # issue 20: drop_last, da_batch_size, checkpoint rule
}
# In a fresh interpreter, as `ispad-bench sweep` computes them: how jsonargparse types a value of
# `Union[int, float]` (`limit_train_batches: 2` -> 2 or 2.0) depends on what was imported before.
KEYS = """
import json, sys
from pathlib import Path
from ispad_bench.sweep import grid
from ispad_bench.sweep.profile import default_configs_dir, load_profile
from ispad_bench.sweep.resolve import resolve
configs, out = default_configs_dir(), {}
for name, pinned in json.loads(sys.argv[1]).items():
    methods, wanted = sorted({m for m, _, _ in pinned}), {tuple(p) for p in pinned}
    for job in grid.expand(configs, load_profile(name, configs), methods=methods, data_root=Path("/tmp/keyroot")):
        if (job.method, job.modality, job.seed) in wanted:  # only the pinned jobs are resolved (each ~1 s)
            out[f"{name} {job.method} {job.modality} {job.seed}"] = resolve(job).key
print(json.dumps(out))
"""


def test_job_keys_are_unchanged(tmp_path):
    import json
    import os
    import subprocess
    import sys

    pinned: dict[str, list] = {}
    for profile, method, modality, seed in PINNED:
        pinned.setdefault(profile, []).append([method, modality, seed])
    env = {**os.environ, "ISPAD_GENERATED_DIR": str(tmp_path / "generated")}
    proc = subprocess.run([sys.executable, "-c", KEYS, json.dumps(pinned)],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    keys = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {k: keys.get(" ".join(map(str, k))) for k in PINNED} == PINNED
