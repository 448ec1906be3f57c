"""The package's shape: imports run one way (no cycle, at module level or inside functions), no
function over 80 lines nor over 10 parameters, and each concept defined in exactly one module. Parsed
with ast, nothing run."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "dmtrack"
MODULES = {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in PKG.rglob("*.py")}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]


def _imports(name: str, tree: ast.AST) -> set[str]:
    """dmtrack modules `name` imports anywhere in its body (functions included)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name).split(".")
                base = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:  # `from pkg import mod` imports the module, `from mod import x` the module itself
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                if target in MODULES and target != name:
                    out.add(target)
    return out


GRAPH = {name: _imports(name, tree) for name, tree in TREES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_import_parser_sees_imports_inside_functions():
    assert "dmtrack.data.files" in GRAPH["dmtrack.data.lasot"]  # module level, relative
    assert "dmtrack.model.weights" in GRAPH["dmtrack.model.dmtrack"]  # inside build_model


def test_no_import_cycle_inside_the_package():
    assert _cycles() == []


def test_layers_import_one_way():
    """data <- model / eval <- train / track <- report <- chain; the leaves (config, io, layout, provenance,
    boxes, paper) import no layer above them."""
    rank = {"dmtrack.data": 1, "dmtrack.model": 2, "dmtrack.eval": 2, "dmtrack.train": 3, "dmtrack.track": 3,
            "dmtrack.report": 4, "dmtrack.chain": 5}
    layer = lambda m: next((r for p, r in rank.items() if m == p or m.startswith(p + ".")), 0)
    wrong = [(m, t) for m, ts in GRAPH.items() if m != "dmtrack" for t in ts  # the package's facade is exempt
             if layer(t) > layer(m) or (layer(m) == layer(t) == 2 and m.split(".")[1] != t.split(".")[1])
             or (layer(m) == layer(t) == 3 and m.split(".")[1] != t.split(".")[1])]
    assert wrong == []


def _below(package: str) -> set[str]:
    return {m for m in GRAPH if m == package or m.startswith(package + ".")}


def test_the_report_never_imports_the_chain_and_the_chain_renders_the_report():
    """report/ turns results into the report and knows nothing of how they were run; the chain (what runs
    the notebooks) renders the report's HTML and prints its Table 1, so it may import report/."""
    into_chain = sorted((m, t) for m in _below("dmtrack.report") for t in GRAPH[m] if t in _below("dmtrack.chain"))
    assert into_chain == []
    assert any(t in _below("dmtrack.report") for m in _below("dmtrack.chain") for t in GRAPH[m])  # the decision, checked
    assert "dmtrack.report.render" in GRAPH["dmtrack.chain.pipeline"]


def test_the_paper_and_the_statistics_are_leaves_anything_may_import():
    """dmtrack/paper.py (the paper's numbers) imports nothing from dmtrack; the bootstrap
    (dmtrack/eval/stats.py) is the one the report's verdicts and the benchmarks use, and imports nothing either."""
    assert GRAPH["dmtrack.paper"] == set() and GRAPH["dmtrack.eval.stats"] == set()
    assert {"dmtrack.eval.stats", "dmtrack.paper"} <= GRAPH["dmtrack.report.verdicts"] | GRAPH["dmtrack.report.claims"]
    assert not any(isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "default_rng"
                   for m in _below("dmtrack.report") for n in ast.walk(TREES[m]))  # no second bootstrap in report/


def test_no_function_longer_than_80_lines():
    long = [f"{MODULES[n].relative_to(PKG.parent)}:{f.lineno} {f.name} {f.end_lineno - f.lineno + 1} lines"
            for n, tree in TREES.items() for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 80]
    assert long == []


MAX_PARAMETERS = 10
# Functions allowed to take more (none today); an entry that no longer applies fails the test.
OVER_PARAMETERS: set[str] = set()


def _parameters(f: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """What a caller may pass: positional(-only) and keyword-only parameters, self and cls excluded, plus
    one each for *args and **kwargs (each hides any number, so it counts at least once)."""
    a = f.args
    named = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    return len(named) + (a.vararg is not None) + (a.kwarg is not None)


def _over_parameters() -> list[str]:
    return sorted(f"{MODULES[n].relative_to(PKG.parent).as_posix()} {f.name}" for n, tree in TREES.items()
                  for f in ast.walk(tree)
                  if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and _parameters(f) > MAX_PARAMETERS)


def test_the_parameter_count_counts_keyword_only_and_star_arguments_once():
    f = ast.parse("class C:\n    def m(self, a, /, b, *args, c, d=1, **kw): pass").body[0].body[0]
    assert _parameters(f) == 6  # a, b, c, d, *args, **kw; self excluded


def test_no_function_takes_more_than_10_parameters():
    over = _over_parameters()
    assert [o for o in over if o not in OVER_PARAMETERS] == []
    assert sorted(OVER_PARAMETERS - set(over)) == []  # an entry that no longer applies leaves the allow-list


def _strings(tree: ast.AST) -> list[str]:
    """String constants of a module, docstrings excluded (f-strings contribute their literal parts)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


@pytest.mark.parametrize("literal, home", [
    ("dmtrack-v", "dmtrack.model.weights"),  # the checkpoint format tag
    ("dmtrack-", ["dmtrack.layout", "dmtrack.model.weights"]),  # tracker folder names (and that tag)
    ("evaluate.json", "dmtrack.layout"),
    ("scores_", "dmtrack.layout"),
    ("synthetic_drift_", "dmtrack.data.benchmarks"),
    ("synthetic stand-in", "dmtrack.data.benchmarks"),
    ("SYNTHETIC STAND-IN", None),
])
def test_each_name_pattern_is_built_in_one_module(literal, home):
    found = sorted(n for n, tree in TREES.items() if any(literal in s for s in _strings(tree)))
    assert found == (home if isinstance(home, list) else [home] if home else [])


@pytest.mark.parametrize("name, home", [
    ("read_frame", "dmtrack.data.files"), ("truncate", "dmtrack.data.sequence"), ("PROTOCOLS", "dmtrack.eval.metrics"),
    ("git_state", "dmtrack.provenance"), ("hardware", "dmtrack.provenance"), ("resolve_device", "dmtrack.provenance"),
    ("package_versions", "dmtrack.provenance"), ("results_dir", "dmtrack.layout"), ("train_dir", "dmtrack.layout"),
    ("score_baselines", "dmtrack.eval.baselines"), ("load_benchmark", "dmtrack.data.benchmarks"),
    ("BENCHMARKS", None), ("STAND_IN", "dmtrack.data.benchmarks"), ("DatasetError", "dmtrack.data.files"),
    ("cpu_cores", "dmtrack.provenance"), ("atomic_open", "dmtrack.io"),
])
def test_each_concept_is_defined_once(name, home):
    where = sorted(n for n, tree in TREES.items() for node in tree.body
                   if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name)
                   or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets)))
    if home is None:  # the paper's four benchmarks (dmtrack.paper) and every loadable benchmark (data.benchmarks)
        assert where == ["dmtrack.data.benchmarks", "dmtrack.paper"]
    else:
        assert where == [home]
