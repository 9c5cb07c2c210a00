"""The layer rule: imports run steward → bot → workers → workflows, and never back up."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Highest first: a package may import itself and anything after it, never anything before it.
LAYERS = ("steward", "bot", "workers", "workflows")
# workers renders what it delivers with bot's Block Kit builders, which are pure (objects in,
# blocks out); nothing else in bot is open to it.
ALLOWED_UPWARD = {"workers": ("bot.views",)}
# Third-party packages a layer must not touch, whatever the layer order says.
FORBIDDEN = {
    "workflows": ("slack_sdk", "slack_bolt", "celery", "kombu", "apscheduler", "redis"),
    "bot": ("celery",),  # bot enqueues through workers' tasks, never through Celery itself
}
_DYNAMIC_IMPORTERS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    """One imported module name and where it was imported."""

    target: str
    lineno: int


@dataclass(frozen=True)
class Violation:
    """An import that breaks the layer rule."""

    where: str
    lineno: int
    target: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}:{self.lineno}: imports {self.target} ({self.reason})"


def collect_imports(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every module `source` imports, anywhere in it, with relative imports made absolute."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, module, is_package)
            # `from bot import views` imports bot.views; `from bot import app` may be bot.app or
            # a name in bot/__init__; either way the first dotted part decides the layer.
            found += [Import(base if alias.name == "*" else f"{base}.{alias.name}", node.lineno)
                      for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            found.append(Import(node.args[0].value, node.lineno))
    return found


def _resolve(name: str | None, level: int, module: str, is_package: bool) -> str:
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package) - 1:
        return f"<beyond top level>.{name or ''}"
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return (called in _DYNAMIC_IMPORTERS and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def check_module(source: str, module: str, *, is_package: bool = False, where: str = "") -> list[Violation]:
    """The imports in `source` (the code of `module`) that break the layer rule."""
    layer = module.split(".")[0]
    violations = []
    for imp in collect_imports(source, module, is_package=is_package):
        reason = _violation(layer, imp.target)
        if reason:
            violations.append(Violation(where or module, imp.lineno, imp.target, reason))
    return violations


def _violation(layer: str, target: str) -> str | None:
    top = target.split(".")[0]
    if top in FORBIDDEN.get(layer, ()):
        return f"{layer} must not import {top}"
    if top not in LAYERS or layer not in LAYERS:
        return None
    if LAYERS.index(top) >= LAYERS.index(layer):
        return None
    allowed = ALLOWED_UPWARD.get(layer, ())
    if any(target == prefix or target.startswith(prefix + ".") for prefix in allowed):
        return None
    return f"{layer} sits below {top}: imports run steward → bot → workers → workflows"


def module_name(path: Path) -> tuple[str, bool]:
    """The dotted module name of a file under ROOT, and whether it is a package's __init__."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def project_files() -> list[Path]:
    """Every Python file in the four layered packages."""
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_import_breaks_the_layer_rule():
    files = project_files()
    assert any(p.is_relative_to(ROOT / "workflows") for p in files), "the walk found no workflows code"
    violations = []
    for path in files:
        module, is_package = module_name(path)
        violations += check_module(path.read_text(encoding="utf-8"), module, is_package=is_package,
                                   where=str(path.relative_to(ROOT)))
    assert not violations, "imports that break the layer rule:\n" + "\n".join(map(str, violations))


# The checker itself, on synthetic modules, so a passing walk means something.
@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("workflows.inventory", "import slack_sdk"),
        ("workflows.inventory", "from slack_bolt import App"),
        ("workflows.inventory", "import celery.result"),
        ("workflows.inventory", "from kombu import Queue"),
        ("workflows.inventory", "from apscheduler.schedulers.blocking import BlockingScheduler"),
        ("workflows.inventory", "import redis"),
        ("workflows.inventory", "from bot.views import home"),
        ("workflows.inventory", "import workers.tasks"),
        ("workflows.inventory", "from steward import cli"),
        ("workflows.inventory", "def later():\n    from workers import tasks\n"),
        ("workflows.inventory", "import importlib\nimportlib.import_module('bot.app')"),
        ("workers.tasks", "from bot.listeners import commands"),
        ("workers.tasks", "from bot import app"),
        ("workers.tasks", "import bot"),
        ("workers.tasks", "import steward.cli"),
        ("bot.listeners.commands", "from steward.cli import main"),
        ("bot.listeners.commands", "from celery import shared_task"),
        ("bot.listeners.commands", "class X:\n    def f(self):\n        import celery\n"),
    ],
)
def test_the_checker_catches(module, source):
    assert check_module(source, module), f"{module}: {source!r} should break the rule"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("workflows.inventory", "from sqlmodel import Session\nfrom workflows.models import Asset"),
        ("workflows.inventory", "from . import audit\nfrom .models import Asset"),
        ("workers.delivery", "from bot.views import home"),
        ("workers.delivery", "from bot.views.home import home_view"),
        ("workers.delivery", "from bot import views"),
        ("workers.delivery", "import celery\nimport redis\nfrom workflows import outbox"),
        ("bot.listeners.commands", "from workers.tasks import deliver\nfrom slack_bolt import App"),
        ("bot.views.home", "from slack_sdk.models.blocks import SectionBlock\nfrom ..ids import ActionId"),
        ("steward.cli", "import bot.app\nimport workers.tasks\nimport workflows.schema\nimport celery"),
    ],
)
def test_the_checker_allows(module, source):
    assert check_module(source, module) == []


def test_relative_imports_are_resolved_against_the_module():
    source = "from . import a\nfrom .. import b\nfrom ..views.blocks import c\nfrom .d import *\n"
    targets = [i.target for i in collect_imports(source, "bot.listeners.commands")]
    assert targets == ["bot.listeners.a", "bot.b", "bot.views.blocks.c", "bot.listeners.d"]
    in_package = [i.target for i in collect_imports("from . import x", "bot.views", is_package=True)]
    assert in_package == ["bot.views.x"]


def test_a_violation_names_the_file_the_line_and_the_rule():
    source = "x = 1\nfrom bot.app import make_app\n"
    [violation] = check_module(source, "workers.tasks", where="workers/tasks.py")
    assert str(violation) == ("workers/tasks.py:2: imports bot.app.make_app "
                              "(workers sits below bot: imports run steward → bot → workers → workflows)")
