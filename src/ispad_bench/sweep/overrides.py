"""Command-line config overrides of a sweep, global or scoped to one method, fitted to each method.

``ispad-bench sweep --all --data.init_args.train_split full`` applies the override to every method
whose config accepts the key (here the unsupervised ones) and reports it as skipped, once per
method, for the others (``ISPADSupervised`` has no ``train_split``); a key no selected method
accepts is an error. Per-method overrides need no profile file::

    --glass.model.init_args.lr 1e-4          # <method>.<key> <value>
    --override glass:model.init_args.lr=1e-4 # the same, explicit

Whether a config accepts ``model.init_args.<name>`` / ``data.init_args.<name>`` is read from the
init signature of the class in the method's YAML (a class taking ``**kwargs`` accepts every
name); any other key (``trainer.*``, ``seed_everything``...) is left to the parser, so a typo
there is still an error of the job's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ispad_bench.sweep.grid import Selection, select
from ispad_bench.sweep.resolve import class_params, yaml_class_path

SECTIONS = ("model", "data")  # config sections whose init args differ between methods


@dataclass(frozen=True)
class Override:
    key: str  # dotted config key, e.g. data.init_args.train_split
    value: str | None  # None: a bare flag
    method: str | None = None  # None: every method

    def arg(self) -> str:
        return f"--{self.key}" if self.value is None else f"--{self.key}={self.value}"

    def text(self) -> str:
        return (f"{self.method}:" if self.method else "") + self.arg()[2:]


@dataclass
class Plan:
    """Per method, the override arguments its jobs get; ``notes``: one line per method that skips some."""

    args: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_tokens(tokens: list[str], scoped: list[str] | None, methods: set[str]) -> list[Override]:
    """``--a.b c`` / ``--a.b=c`` / ``--<method>.a.b c`` tokens and ``METHOD:KEY=VALUE`` texts -> overrides."""
    out: list[Override] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise ValueError(f"unexpected argument {token!r}: overrides are --a.b.c VALUE or --a.b.c=VALUE")
        key, value = token[2:].split("=", 1) if "=" in token else (token[2:], None)
        if value is None and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value, i = tokens[i + 1], i + 1
        i += 1
        head, _, rest = key.partition(".")
        out.append(Override(rest, value, head) if head in methods and rest else Override(key, value))
    for text in scoped or []:
        method, sep, assignment = text.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or not key or not method:
            raise ValueError(f"--override {text!r}: expected METHOD:KEY=VALUE, e.g. glass:model.init_args.lr=1e-4")
        out.append(Override(key.removeprefix("--"), value, method))
    for o in out:
        if o.method is not None and o.method not in methods:
            raise ValueError(f"override {o.text()}: no method {o.method!r} in this sweep ({', '.join(sorted(methods))})")
    return out


def _init_name(key: str) -> tuple[str, str] | None:
    """``data.init_args.train_split`` (or ``data.train_split``) -> ("data", "train_split")."""
    parts = key.split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS or parts[1] == "class_path":
        return None
    if parts[1] == "init_args":
        return (parts[0], parts[2]) if len(parts) > 2 else None
    return parts[0], parts[1]


def accepts(config_file: Path, key: str) -> tuple[bool, str]:
    """(does this config take ``key``, the class that decides); unknown cases are accepted."""
    target = _init_name(key)
    if target is None:
        return True, ""
    section, name = target
    class_path = yaml_class_path(config_file, section)
    if class_path is None:
        return True, ""
    try:
        names, var_kw = class_params(class_path)
    except Exception:  # noqa: BLE001 (an unimportable class is the parser's error to report)
        return True, class_path
    return (name in names or var_kw), class_path


def plan(method_files: dict[str, list[Path]], overrides: list[Override]) -> Plan:
    """Which override each method gets. ``method_files``: method -> its config files in this sweep."""
    result = Plan(args={m: [] for m in method_files})
    used: dict[Override, list[str]] = {o: [] for o in overrides}
    skipped: dict[str, list[str]] = {}
    for method, files in method_files.items():
        for o in overrides:
            if o.method is not None and o.method != method:
                continue
            verdicts = [accepts(f, o.key) for f in files]
            if all(ok for ok, _ in verdicts):
                result.args[method].append(o.arg())
                used[o].append(method)
            else:
                owner = next(cls for ok, cls in verdicts if not ok).rsplit(".", 1)[-1]
                skipped.setdefault(method, []).append(f"{o.arg()} ({owner} has no '{_init_name(o.key)[1]}')")  # type: ignore[index]
    for o, methods in used.items():
        if o.method is not None and o.method not in method_files:
            raise ValueError(f"override {o.text()}: method {o.method} is not selected in this sweep")
        if not methods:
            who = f"method {o.method} does not accept" if o.method else "no method of this sweep accepts"
            raise ValueError(f"override {o.text()}: {who} '{o.key}'")
    for method, items in skipped.items():
        result.notes.append(f"{method}: skips {', '.join(items)}")
    return result


def for_sweep(configs_dir: Path, methods: list[str] | None, modalities: list[str] | None,
              tokens: list[str], scoped: list[str] | None, profile=None, selection: Selection | None = None) -> Plan:
    """:func:`plan` for the methods and modalities a sweep selects (``selection``: made once by the
    caller and shared with ``grid.expand``; else made here as ``grid.select`` would)."""
    selection = selection or select(configs_dir, profile, methods, modalities)
    return plan(selection.files(), parse_tokens(list(tokens), scoped, set(selection.available)))
