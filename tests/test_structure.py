"""The package's shape, checked from its source with `ast`: layers import only downwards, no import cycle
(imports inside functions count), few top-level modules, no very long function, no hidden local imports."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "isdaa"

# Data flows one way: each layer may import its own layer and the ones to its left, never one to its right.
# integrations/ (optional adapters, e.g. to TRL) sits on top: nothing in the core may import it.
LAYERS = ["errors", "runtime", "config", "objectives", "data", "modeling", "generation", "eval", "training", "lab",
          "cli", "integrations"]
MAX_FUNCTION_LINES = 80
MAX_TOP_LEVEL_FILES = 4


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _imports(name: str, path: Path):
    """(imported isdaa module, line, inside a function?) for every import statement of the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    for node in ast.walk(tree):
        local = id(node) in functions
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "isdaa":
                    yield alias.name, node.lineno, local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(name, path).split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "isdaa":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else base), node.lineno, local


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _, _ in _imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_downwards_only():
    bad = []
    for name, path in MODULES.items():
        here = _layer(name)
        if here is None:  # the package façade (isdaa/__init__.py) may reach any layer
            continue
        for target, line, _ in _imports(name, path):
            there = _layer(target)
            if there is not None and there in LAYERS and here in LAYERS and LAYERS.index(there) > LAYERS.index(here):
                bad.append(f"{path.relative_to(SRC)}:{line} ({here}) imports {target} ({there})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_every_package_is_a_known_layer():
    layers = {_layer(m) for m in MODULES} - {None}
    assert layers <= set(LAYERS), f"not in the layer order: {layers - set(LAYERS)}"


def test_objectives_import_only_torch():
    bad = []
    for name, path in MODULES.items():
        if _layer(name) != "objectives":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            bad += [f"{path.name}:{node.lineno} {r}" for r in roots if r not in ("torch", "math", "dataclasses", "difflib", "typing", "collections", "isdaa", "__future__")]
    assert not bad, f"objectives must stay pure torch: {bad}"


def test_few_top_level_modules():
    files = sorted(p.name for p in PKG.glob("*.py"))
    assert len(files) <= MAX_TOP_LEVEL_FILES, files


def test_no_function_over_the_limit():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over the limit:\n" + "\n".join(long)


def test_imports_inside_functions_say_why():
    """isdaa's own modules are imported at module level (the façade `isdaa/__init__.py` excepted: it keeps
    `import isdaa.objectives` free of transformers); any other import inside a function carries a comment."""
    hidden = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                own = isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("isdaa")) or (
                    isinstance(node, ast.Import) and any(a.name.startswith("isdaa") for a in node.names))
                if own and name != "isdaa":
                    hidden.append(f"{path.relative_to(SRC)}:{node.lineno} (isdaa module inside {fn.name})")
                    continue
                above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
                if "#" not in lines[node.lineno - 1] and not above.startswith("#"):
                    hidden.append(f"{path.relative_to(SRC)}:{node.lineno} (in {fn.name}, no comment saying why)")
    assert not hidden, f"{len(hidden)} imports inside functions:\n" + "\n".join(sorted(set(hidden)))


KL_ESTIMATOR_MODULE = "isdaa.eval.kl"
KL_CALLERS = {"isdaa.eval.sampled"}  # the evaluation core; `isdaa.eval` may re-export the names
KL_FUNCTIONS = {"kl_estimates", "kl_terms"}


def _referenced_names(tree: ast.AST) -> set[str]:
    """Every name a module uses or imports: bare names, attribute names (`np.expm1`), imported names."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    return names


def test_one_place_computes_the_sampled_kl():
    """The sampled KL(π_θ‖π_ref) is computed in one place. Forbidden: (1) the k1/k3 estimator's code (its k3
    term, `expm1`) anywhere but `isdaa/eval/kl.py`; (2) any module but the evaluation core `isdaa/eval/sampled.py`
    using `kl_estimates` or `kl_terms` (the package `isdaa/eval/__init__.py` may import them to re-export them,
    and may not call them). So an evaluator that estimates the KL from its own samples, instead of going through
    `isdaa.eval.sampled`, fails here."""
    bad = []
    for name, path in MODULES.items():
        if name == KL_ESTIMATOR_MODULE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = _referenced_names(tree)
        if "expm1" in used:
            bad.append(f"{path.relative_to(SRC)}: expm1 (the k3 estimator belongs to isdaa/eval/kl.py)")
        if name in KL_CALLERS:
            continue
        calls = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}
        allowed = set() if name != "isdaa.eval" else KL_FUNCTIONS - calls
        for function in sorted((used & KL_FUNCTIONS) - allowed):
            bad.append(f"{path.relative_to(SRC)}: {function} (only isdaa/eval/sampled.py estimates the sampled KL)")
    assert not bad, "a second place computes the sampled KL:\n" + "\n".join(bad)


# The world definitions: the factory that maps a config to its world, and the controlled world's own model (which
# checks its own kinds: junk words, a behaviour policy).
WORLD_FACTORY = "isdaa.lab.worlds"
WORLD_DEFINITIONS = (WORLD_FACTORY, "isdaa.lab.world")
WORLD_CLASSES = ("ModelWorld", "ControlledWorld")


def _is_kind(node: ast.AST) -> bool:
    """`x.kind`, `x["kind"]` or `x.get("kind", ...)`: a kind read from an object or a dict."""
    if isinstance(node, ast.Attribute):
        return node.attr == "kind"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "kind"
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "kind")


def _has_string(node: ast.AST) -> bool:
    """A string constant, or a tuple / list / set of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_has_string(e) for e in node.elts)


def test_only_the_world_definitions_branch_on_the_world_kind():
    """The lab never asks which kind of world it has: `isdaa.lab.worlds` (the factory) maps a config to its world
    and every other module uses the world's own methods. Forbidden everywhere in the package but the factory and
    the controlled world's model (`isdaa.lab.world`): a comparison of a kind (`x.kind`, `x["kind"]`,
    `x.get("kind")`) with a string or a collection of strings (==, !=, in, not in). Forbidden everywhere but the
    factory: the name `is_model_world` (defined, called or imported) and `isinstance(..., ModelWorld)` or
    `isinstance(..., ControlledWorld)`."""
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Compare) and name not in WORLD_DEFINITIONS:
                operands = [node.left, *node.comparators]
                if any(_is_kind(o) for o in operands) and any(_has_string(o) for o in operands):
                    bad.append(f"{where} compares a world kind with a string")
            if name == WORLD_FACTORY:
                continue
            if "is_model_world" in {getattr(node, key, None) for key in ("id", "attr", "name")}:  # (imports: alias.name)
                bad.append(f"{where} uses is_model_world")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                    and len(node.args) == 2 and any(n in ast.unparse(node.args[1]) for n in WORLD_CLASSES)):
                bad.append(f"{where} asks whether a world is a {ast.unparse(node.args[1])}")
    assert not bad, "world-kind branches outside the world definitions:\n" + "\n".join(bad)
