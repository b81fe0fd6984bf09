"The package's shape: modules import alone and only downwards, the Learner is whole on import, lines fit."
import ast, inspect, subprocess, sys
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parent.parent/'fastfound'
MODULES = sorted(p.stem for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx'))


def imports(mod:str)->set:
    "The fastfound modules that `mod` imports (relative imports, `from . import x` and `import fastfound`)."
    tree, out = ast.parse((PKG/f'{mod}.py').read_text()), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.level == 1:
            out |= {n.module} if n.module else {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and (n.module or '').startswith('fastfound'):
            out.add(n.module.split('.', 1)[1] if '.' in n.module else '__init__')
        elif isinstance(n, ast.Import):
            out |= {a.name.split('.', 1)[1] if '.' in a.name else '__init__'
                    for a in n.names if a.name.split('.')[0] == 'fastfound'}
    return out


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    graph['__init__'] = imports('__init__')
    state = {}
    def visit(m, path):
        if state.get(m) == 'done': return
        assert state.get(m) != 'open', f'import cycle: {" -> ".join(path + [m])}'
        state[m] = 'open'
        for n in sorted(graph.get(m, ())): visit(n, path + [m])
        state[m] = 'done'
    for m in graph: visit(m, [])


def test_cycle_check_finds_a_cycle(monkeypatch):
    "The check above can fail: a two-module cycle is caught."
    fake = {'a': {'b'}, 'b': {'a'}}
    state = {}
    def visit(m, path):
        if state.get(m) == 'done': return
        if state.get(m) == 'open': raise AssertionError(' -> '.join(path + [m]))
        state[m] = 'open'
        for n in sorted(fake[m]): visit(n, path + [m])
        state[m] = 'done'
    with pytest.raises(AssertionError, match='a -> b -> a'): visit('a', [])


@pytest.mark.parametrize('mod', [m for m in MODULES if m not in ('np_foundations',)])
def test_module_imports_alone(mod):
    r = subprocess.run([sys.executable, '-c', f'import fastfound.{mod}'], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def patched_learner_methods()->set:
    "Every function some module attaches to `Learner` with `@patch`."
    names = set()
    for m in MODULES:
        for n in ast.walk(ast.parse((PKG/f'{m}.py').read_text())):
            if not isinstance(n, ast.FunctionDef) or not n.args.args: continue
            ann = n.args.args[0].annotation
            if any(getattr(d, 'id', getattr(getattr(d, 'func', None), 'id', None)) == 'patch'
                   for d in n.decorator_list) and getattr(ann, 'id', None) == 'Learner':
                names.add(n.name)
    return names


def test_learner_whole_in_a_fresh_interpreter():
    want = {'fit_one_cycle', 'lr_find', 'summary', 'save', 'load', 'export', 'get_preds', 'validate',
            'predict_one', 'run_pass', 'isolated', 'state_dict', 'load_state_dict'}
    names = sorted(patched_learner_methods() | want)
    code = ('import inspect, json; from fastfound.learner import Learner; '
            f'print(json.dumps([[n for n in {names!r} if not hasattr(Learner, n)], '
            "'resume' in inspect.signature(Learner.fit).parameters]))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == '[[], true]'


def test_each_learner_method_attached_once():
    "No module replaces a method another defined: a patched name is defined in one module, never reassigned."
    seen = {}
    for m in MODULES:
        src = (PKG/f'{m}.py').read_text()
        assert 'Learner.fit =' not in src and '__wrapped__' not in src, m
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Attribute) and getattr(t.value, 'id', None)
                                                 == 'Learner' for t in n.targets):
                raise AssertionError(f'{m} assigns an attribute of Learner: line {n.lineno}')
    for m in MODULES:
        for n in ast.walk(ast.parse((PKG/f'{m}.py').read_text())):
            if isinstance(n, ast.FunctionDef) and n.args.args and getattr(n.args.args[0].annotation, 'id',
                                                                          None) == 'Learner':
                assert n.name not in seen or n.name.startswith('_'), f'{n.name}: {seen.get(n.name)} and {m}'
                seen[n.name] = m


def test_all_gives_the_library():
    code = ('from fastfound.all import *; have = dir(); '
            'print(all(n in have for n in ["Learner", "DeviceCB", "MetricsCB", "Recorder", "ProgressCB", '
            '"CSVLogger", "EarlyStopping", "Checkpoint", "ParamScheduler", "fashion_mnist_dls", "DataLoaders", '
            '"cnn", "mlp", "load_learner", "accuracy", "set_seed", "MixedPrecision", "ActivationStats"]))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == 'True'


def _patch_targets(tree)->list:
    "`(class, method, line)` for each function in `tree` that `@patch` attaches to the class in its annotation."
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef) and n.args.args and any(
                getattr(d, 'id', getattr(getattr(d, 'func', None), 'id', None)) == 'patch' for d in n.decorator_list):
            out.append((getattr(n.args.args[0].annotation, 'id', None), n.name, n.lineno))
    return out


@pytest.mark.parametrize('mod', MODULES)
def test_patch_only_extends_earlier_classes(mod):
    "Each class is whole where it is defined: `@patch` adds methods to a class of an earlier module only."
    tree = ast.parse((PKG/f'{mod}.py').read_text())
    own = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    bad = [(c, f, line) for c, f, line in _patch_targets(tree) if c in own]
    assert not bad, f'{mod}.py patches its own classes: {bad}'


def test_patch_check_can_fail():
    tree = ast.parse('class A: pass\n@patch\ndef f(self:A): pass\n')
    assert _patch_targets(tree) == [('A', 'f', 3)]


def test_learner_module_is_the_learners():
    "The loop in the class body, state without signals, and no lint exception for redefinitions."
    src = (PKG/'learner.py').read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == 'Learner')
    body = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert {'__init__', 'split', 'predict', 'get_loss', 'backward', 'step', 'zero_grad', 'fit', '_stage',
            '_do_fit', '_do_epoch', '_phase', '_do_batches', '_resolve'} <= body
    assert len(src.splitlines()) <= 560
    assert 'signal' not in (PKG/'state.py').read_text()
    assert 'F811' not in (PKG.parent/'ruff.toml').read_text()
