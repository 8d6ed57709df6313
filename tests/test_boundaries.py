"""The package's import boundaries, checked from the source and in fresh interpreters.

- No import cycles among trustchain modules. Imports under ``if TYPE_CHECKING:``
  do not count (they never run); every other import does, at module level or
  inside a function, and importing ``a.b.c`` also depends on the packages ``a.b``
  and ``a`` whose ``__init__`` runs first (except the importer's own packages,
  which are always already loading).
- Peers and edges import an actor's vocabulary, not the actor: only the composition
  root imports ``actors/<name>/actor.py``.
- Domain code is free of the runtime: importing a domain package or an error
  module in a fresh interpreter loads none of pykka, trio, outcome, loguru, nor
  python-pkcs11 (the way trio tests its public surface, in a subprocess, so that
  nothing this test session already imported hides a regression). Only the HSM's
  token loads pkcs11: the CT log catches ``HsmError`` from ``hsm.errors``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("actors", "supervisors", "protocols", "config")  # -> trustchain.<folder>
RUNTIME = ("pykka", "trio", "outcome", "loguru", "pkcs11")


def _modules() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = ["trustchain", *path.relative_to(ROOT).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` but those in the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield child
        yield from _runtime_nodes(child)


def _imported(name: str, path: Path, tree: ast.Module) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # submodules


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own_packages = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}
        for target in _imported(name, path, ast.parse(path.read_text(), str(path))):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the module and the packages above it
                dep = ".".join(parts[:i])
                if dep in modules and dep != name and dep not in own_packages:
                    graph[name].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_it_should() -> None:
    graph = import_graph()
    assert "trustchain.supervisors.errors" in graph["trustchain.actors.ca.errors"]
    assert "trustchain.protocols.client" in graph["trustchain.protocols.cli_common"]
    assert "trustchain.supervisors" in graph["trustchain.actors.composition"]  # from the package
    assert "trustchain.protocols.boot" in graph["trustchain.protocols.cli"]  # in a function


def test_imports_under_type_checking_do_not_count() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from trustchain.a import A\n"
        "else:\n"
        "    import trustchain.b\n"
        "def f():\n"
        "    from . import c\n"
    )
    found = set(_imported("trustchain.x", Path("x.py"), tree))
    assert "trustchain.a" not in found
    assert {"trustchain.b", "trustchain", "trustchain.c"} <= found


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_among_trustchain_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


# actors/<name>/actor.py each
ACTORS = ("hsm", "ctlog", "issuer", "monitor", "renewal", "validator", "detector", "resolver",
          "acme")  # fmt: skip
COMPOSITION = "trustchain.actors.composition"


def test_only_the_composition_root_imports_an_actor() -> None:
    """Peers and edges import an actor's vocabulary (``<actor>.messages``, or the
    package's face, which loads the actor only when its class is asked for), never its
    implementation; an actor's messages import nothing of the actor."""
    graph = import_graph()
    implementations = {f"trustchain.actors.{name}.actor" for name in ACTORS}
    assert implementations <= graph.keys()
    assert implementations <= graph[COMPOSITION]
    for name, deps in graph.items():
        if name != COMPOSITION:
            assert not deps & implementations, f"{name} imports {sorted(deps & implementations)}"


DOMAIN = (
    "trustchain.actors.ca",
    "trustchain.actors.ct",
    "trustchain.actors.ct.roots",
    "trustchain.actors.ca.errors",
    "trustchain.actors.ct.errors",
    "trustchain.actors.hsm.errors",
    "trustchain.actors.renewal.errors",
    "trustchain.actors.trust",
    "trustchain.actors.trust.errors",
    "trustchain.actors.trust.formats",
    "trustchain.actors.trust.params",
    "trustchain.actors.trust.records",
    "trustchain.actors.trust.requests",
    "trustchain.actors.trust.rounds",
    "trustchain.actors.trust.scores",
    "trustchain.actors.trust.space",
    "trustchain.actors.trust.stake",
    "trustchain.actors.trust.store",
    "trustchain.actors.trust.vdf",
    "trustchain.actors.trust.votes",
    "trustchain.actors.trust.work",
    "trustchain.actors.validator.core",
    "trustchain.actors.resolver.zone",
    "trustchain.actors.resolver.upstream",
    "trustchain.actors.resolver.cache",
    "trustchain.actors.resolver.wire",
    "trustchain.actors.resolver.core",
    "trustchain.actors.resolver.messages",
    "trustchain.actors.resolver.chase",
    "trustchain.actors.resolver.challenges",
    "trustchain.actors.trust.domain_control",
    "trustchain.actors.validator.challenges",
    "trustchain.actors.validator.wire",
    "trustchain.actors.acme.core",
    "trustchain.actors.acme.store",
    "trustchain.actors.acme.jws",
    "trustchain.actors.acme.nonces",
    "trustchain.actors.acme.identifiers",
    "trustchain.actors.acme.problems",
    "trustchain.actors.acme.messages",
    "trustchain.supervisors.errors",
)


def loaded_by(module: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` importing ``module`` loads, in a fresh interpreter."""
    probe = f"import sys, {module}\nprint(' '.join(m for m in {names!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


@pytest.mark.parametrize("module", DOMAIN)
def test_domain_code_loads_none_of_the_runtime(module: str) -> None:
    loaded = loaded_by(module, RUNTIME)
    assert loaded == [], f"importing {module} loads {' '.join(loaded)}"


def test_the_ct_log_does_not_load_the_hsm_library() -> None:
    assert loaded_by("trustchain.actors.ctlog.actor", ("pkcs11",)) == []
    assert loaded_by("trustchain.actors.hsm.token", ("pkcs11",)) == ["pkcs11"]  # the probe works


def test_the_runtime_names_still_come_from_the_package() -> None:
    probe = (
        "import sys, trustchain.supervisors as s\n"
        "assert 'pykka' not in sys.modules\n"
        "from trustchain.supervisors import Supervisor, TrustChainError, ask\n"
        "assert Supervisor is s.supervisor.Supervisor and 'pykka' in sys.modules\n"
        "assert all(hasattr(s, name) for name in s.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
