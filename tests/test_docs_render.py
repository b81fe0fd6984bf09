"""The docs build's notebook-to-page step (`docs/hooks.py`), on a fixture notebook that uses every feature it renders.

tests/fixtures/nbs/00_fixture.ipynb was executed with tools/run_nbs.py: its outputs are real (a show_doc, a
matplotlib figure, an HTML table, printed text). Each hidden thing in it holds a marker string.
"""
import ast, base64, importlib.util, json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT/'tests'/'fixtures'/'nbs'

def _load(name, fn):
    spec = importlib.util.spec_from_file_location(name, fn)
    mod = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

hooks = _load('docs_hooks', ROOT/'docs'/'hooks.py')
gd = _load('griffe_docments', ROOT/'docs'/'griffe_docments.py')
SQUARE = hooks.Module('fastfound.fixture', Path('fixture.py'), '', ['square'])

@pytest.fixture(scope='module')
def page():
    link = hooks.Linker([SQUARE], {'index': 'index.md', '00_fixture': 'fixture.md'})
    return hooks.render(FIX/'00_fixture.ipynb', link)

def test_fixture_holds_what_the_tests_look_for():
    "The markers are really in the notebook, in the cells they should be in: the checks below can fail."
    cells = json.loads((FIX/'00_fixture.ipynb').read_text())['cells']
    src = {i: ''.join(c['source']) for i, c in enumerate(cells)}
    def cell(marker): return next(s for s in src.values() if marker in s)
    assert cell('hidden-cell marker').startswith('#| hide')
    assert cell('include-false marker').startswith('#| include: false')
    assert cell('output-false marker').startswith('#| output: false')
    outs = json.dumps([c.get('outputs', []) for c in cells])
    assert 'output-false marker' in outs and 'image/png' in outs and 'text/markdown' in outs

def test_title_uri_and_module(page):
    assert page.title == 'Squares: a fixture'
    assert page.uri == 'fixture.md' and page.module == 'fixture'
    assert page.markdown.startswith('# Squares: a fixture\n')

def test_hidden_things_stay_hidden(page):
    md = page.markdown
    for marker in ('hidden-cell marker', 'include-false marker', 'nbdev_export'): assert marker not in md
    assert 'print("fixture: output-false marker")' in md      # its code shows,
    assert '\nfixture: output-false marker' not in md         # its output does not
    assert 'shown without its code' in md and 'print("shown without its code")' not in md  # echo: false
    assert not [l for l in md.splitlines() if l.lstrip().startswith('#|')]

def test_show_doc_is_markdown_without_its_call(page):
    md = page.markdown
    assert '### square' in md and '*The square of `x`.*' in md
    assert 'show_doc(square)' not in md

def test_figures_are_png_files_next_to_the_page(page):
    pngs = {u: d for u, d in page.assets.items() if u.endswith('.png')}
    assert pngs and all(u.startswith('fixture_files/') for u in pngs)
    assert all(d[:8] == b'\x89PNG\r\n\x1a\n' for d in pngs.values())
    for u in pngs: assert f']({u})' in page.markdown
    assert 'data:image' not in page.markdown

def test_outputs_tables_and_folds(page):
    md = page.markdown
    assert '<div class="nb-output" markdown>' in md
    assert '<table><tr><th>x</th><th>square</th></tr>' in md  # HTML output, as HTML
    assert '| 3 | 9 |' in md                                   # a markdown table, as written
    assert '<details class="nb-fold" markdown>' in md and '```text\n0 0\n1 1\n2 4\n```' in md
    assert '```text\n9\n```' in md

def test_links(page):
    md = page.markdown
    assert '[`square`][fastfound.fixture.square] computes it' in md   # prose mentions link to the reference
    assert '[home page](index.md)' in md                              # notebook links become page links
    assert 'def square(x:float, # the number to square' in md          # code is left alone

def test_links_to_missing_notebooks_are_text(page):
    link = hooks.Linker([], {'index': 'index.md'})
    pg = hooks.Page(FIX/'x.ipynb', 'x.md', 'x', None)
    r = hooks.Renderer(pg, link)
    from execnb.nbio import mk_cell
    md = r.markdown(mk_cell('See [the start](index.ipynb#install) and [later](./09_later.ipynb).', 'markdown'), 0)
    assert md == 'See [the start](index.md#install) and later.'

def test_linker_leaves_code_headings_and_links_alone():
    link = hooks.Linker([hooks.Module('fastfound.m', Path('m.py'), '', ['f', 'K', 'K.fit'])], {'01_m': 'm.md'})
    md = '## About `f`\n\nCall `f()` or `K.fit`, see `01_m` and [`f`](x.md); `g` is unknown.\n\n```python\n`f`\n```'
    out = link(md)
    assert out.splitlines()[0] == '## About `f`'
    assert '[`f()`][fastfound.m.f]' in out and '[`K.fit`][fastfound.m.K.fit]' in out
    assert '[`01_m`](m.md)' in out and '[`f`](x.md)' in out and ' `g` is' in out
    assert out.endswith('```python\n`f`\n```')
    assert '[`fastfound.m`](api/m.md)' in link('`fastfound.m`')

def test_readme_flavour_is_plain_github_markdown():
    link = hooks.Linker([SQUARE], {'index': 'nbs/index.ipynb'}, style='readme')
    md = hooks.render(FIX/'00_fixture.ipynb', link, img_base='https://example.invalid/').markdown
    assert 'nb-output' not in md and '[home page](nbs/index.ipynb)' in md
    assert '](https://example.invalid/fixture_files/' in md and '][fastfound.' not in md

def test_notebook_order_and_uris(tmp_path):
    for n in ['10_b.ipynb', '02_a.ipynb', 'tutorial.ipynb', 'index.ipynb', '_draft.ipynb', '.x.ipynb',
              '02a_extra.ipynb']:
        (tmp_path/n).write_text('{}')
    assert [p.name for p in hooks.notebooks(tmp_path)] == ['index.ipynb', 'tutorial.ipynb', '02_a.ipynb',
                                                          '02a_extra.ipynb', '10_b.ipynb']
    uris = [hooks.page_uri(p) for p in hooks.notebooks(tmp_path)]
    assert uris == ['index.md', 'tutorial.md', 'a.md', 'extra.md', 'b.md']

def test_modules_list_public_names(tmp_path):
    (tmp_path/'pkg').mkdir()
    (tmp_path/'pkg'/'m.py').write_text('__all__ = ["f", "K", "made_later"]\n'
        'def f(): pass\ndef _g(): pass\nclass K:\n    def fit(self): pass\n    def _step(self): pass\n')
    (tmp_path/'pkg'/'_private.py').write_text('__all__ = ["h"]\ndef h(): pass\n')
    [m] = hooks.modules(tmp_path/'pkg')
    assert m.name == 'pkg.m' and m.names == ['f', 'K', 'K.fit'] and m.uri == 'api/m.md'

def test_docments_become_args():
    src = ('def f(x:int, # the input\n      y=(1,\n         2), # a pair\n      *, z=3 # keyword\n'
           '     )->int: # the answer\n    "Doc."\n    return x\n')
    params, ret = gd.docments(ast.parse(src).body[0], src.splitlines())
    assert params == {'x': 'the input', 'y': 'a pair', 'z': 'keyword'} and ret == 'the answer'
    assert gd.docments(ast.parse('def g(a, b): pass').body[0], ['def g(a, b): pass']) == ({}, '')

def test_site_nav_api_and_readme(tmp_path):
    "The nav: home, the notebooks in order titled by their H1s, then the reference; the README from the index."
    import shutil
    shutil.copy(ROOT/'nbs'/'index.ipynb', tmp_path/'index.ipynb')
    shutil.copy(FIX/'00_fixture.ipynb', tmp_path/'03_late.ipynb')
    shutil.copy(FIX/'00_fixture.ipynb', tmp_path/'01_early.ipynb')
    shutil.copy(FIX/'00_fixture.ipynb', tmp_path/'tutorial.ipynb')  # unnumbered: read first, right after home
    site = hooks.Site(ROOT, tmp_path)
    nav = site.nav()
    assert nav[0] == {'Home': 'index.md'}
    assert nav[1] == {'Squares: a fixture': 'tutorial.md'}
    sections = {k: v for d in nav for k, v in d.items()}
    assert list(sections)[2:] == ['For the reader', 'Chapters', 'Reference', 'Changelog']
    assert sections['Chapters'] == [{'Squares: a fixture': 'early.md'}, {'Squares: a fixture': 'late.md'}]
    assert {'Study guide': 'study_guide.md'} in sections['For the reader']
    assert {'Further research': 'further_research.md'} in sections['For the reader']
    ref = {k: v for d in sections['Reference'] for k, v in d.items()}
    assert ref['API reference'][0] == {'Overview': 'api/index.md'} and sections['Changelog'] == 'changelog.md'
    assert ref['Callbacks and events'] == hooks.CALLBACKS_URI
    assert '| `before_fit` |' in site.extra[hooks.CALLBACKS_URI]
    assert {m.uri for m in site.mods} | {'api/index.md'} == set(site.api)
    readme = site.readme('https://example.invalid/site/')
    assert readme.startswith(hooks.README_HEAD) and 'docs-test: hidden-cell marker' not in readme

def test_docstring_links():
    refs = {'Learner': 'pkg.learner.Learner', 'Learner.fit': 'pkg.learner.Learner.fit'}
    doc = 'Wraps `Learner`; see `Learner.fit()`, not `other`.\n\n```\n`Learner`\n```'
    assert gd.link_code(doc, refs) == ('Wraps [`Learner`][pkg.learner.Learner]; see [`Learner.fit()`]'
                                       '[pkg.learner.Learner.fit], not `other`.\n\n```\n`Learner`\n```')
    assert gd.link_code('A `Learner`.', refs, own='pkg.learner.Learner') == 'A `Learner`.'

def test_a_failing_notebook_names_notebook_and_cell(tmp_path):
    "What `make docs-exec` relies on: the run stops with an error that names the notebook and the cell."
    cells = [{'cell_type': 'markdown', 'metadata': {}, 'source': '# Bad'},
             {'cell_type': 'code', 'metadata': {}, 'source': 'x = 1', 'outputs': [], 'execution_count': None},
             {'cell_type': 'code', 'metadata': {}, 'source': '1/0', 'outputs': [], 'execution_count': None}]
    fn = tmp_path/'07_bad.ipynb'
    fn.write_text(json.dumps({'cells': cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nbs.py'), '--one', str(fn)], capture_output=True, text=True)
    assert r.returncode != 0
    assert '07_bad.ipynb' in r.stderr and 'Cell #3' in r.stderr and 'ZeroDivisionError' in r.stderr

# --- maths, figures, @patch, constants, links (docs/hooks.py and docs/griffe_docments.py) ----------------------

def test_raw_maths_outside_code_is_found():
    ok = '<p>a <span class="arithmatex">\\(x^2\\)</span> <code>\\(y</code></p><pre>$$z$$</pre><p>costs $5 and $6</p>'
    assert hooks.raw_maths(ok) == []
    for bad in ['<p>left \\(x\\) raw</p>', '<p>a \\[x\\] block</p>', '<p>$$x$$</p>', '<p>then $x^2$ here</p>']:
        assert hooks.raw_maths(bad), bad

def test_katex_is_found_or_named():
    files = hooks.katex_files()
    assert {'assets/katex/katex.min.js', 'assets/katex/katex.min.css'} <= set(files)
    assert any(u.endswith('.woff2') for u in files) and all(f.is_file() for f in files.values())

def test_dunders_escaped_outside_code_and_maths():
    md = 'call super().__init__() here, `__call__` stays, $a__b__$ too\n```\n__init__\n```'
    out = hooks.escape_dunders(md)
    assert 'super().\\_\\_init\\_\\_()' in out and '`__call__`' in out and '$a__b__$' in out
    assert out.endswith('```\n__init__\n```')
    assert gd.escape_dunders('see super().__init__() and `__init__`') == 'see super().\\_\\_init\\_\\_() and `__init__`'

def _png(widths, h=40, gap=30):
    "A white image with black blocks of the given widths, `gap` white columns apart: a fake multi-panel figure."
    import io
    from PIL import Image, ImageDraw
    im = Image.new('RGB', (sum(widths) + gap * (len(widths) + 1), h), 'white')
    d, x = ImageDraw.Draw(im), gap
    for w in widths: d.rectangle([x, 5, x + w - 1, h - 5], fill='black'); x += w + gap
    buf = io.BytesIO(); im.save(buf, format='PNG'); return buf.getvalue()

def test_panels_split_subplots_only():
    ps = hooks.panels(_png([200, 210]))
    assert len(ps) == 2 and ps[0][0] == 0 and ps[0][1] == ps[1][0] and ps[1][1] == 200 + 210 + 90
    assert hooks.panels(_png([300])) == []
    assert len(hooks.panels(_png([20, 200, 20, 200]))) == 2  # narrow pieces (axis labels) join the panel on their right

def test_alt_text_rules():
    assert hooks.fig_alt('#| fig-alt: Loss per batch\nplt.plot(x)', 'Prose.') == 'Loss per batch'
    assert hooks.fig_alt('# alt: Two curves\nplt.plot(x)') == 'Two curves'
    assert hooks.fig_alt("ax.set_title('means'); ax.set_xlabel('batch')") == 'means (x: batch)'
    assert hooks.fig_alt('plt.plot(x)', '## Head\n\nThe loss falls. Then it rises.') == 'The loss falls.'
    assert hooks.fig_alt('plt.plot(x)') == 'A figure'
    src = "ax.plot(s, a, label='hand'); ax.plot(s, b, label='autograd')\nax.set(xlabel='step', title='MLP, SGD')"
    assert hooks.fig_alt(src) == 'MLP, SGD (x: step); lines: hand, autograd'
    assert hooks.fig_alt("ax.set(xlabel='layer')", 'Two nets at init. More.') == 'Two nets at init (x: layer)'
    # A figure drawn by the package: what its drawer's docstring says it draws (the last drawer called).
    drawn = {'plot_stats': 'Means per batch.'}
    assert hooks.fig_alt('stats = run(m)\nstats.plot_stats();', 'Prose.', drawn) == 'Means per batch.'
    # Markdown further up: its last sentence, the one nearest the figure.
    md = 'Counts first. Then one image per class:'
    assert hooks.fig_alt('plt.imshow(x)', md, adjacent=False) == 'Then one image per class'

def test_drawers_say_what_the_package_draws(tmp_path):
    (tmp_path/'pkg').mkdir()
    (tmp_path/'pkg'/'a.py').write_text(
        'import matplotlib.pyplot as plt\n'
        'def _ax(ax): return ax or plt.subplots()[1]\n'
        'class F:\n    def plot(self):\n        "Loss against rate."\n        plt.plot([1])\n'
        'def plot_loss(ax=None):\n    "Loss per batch."\n    _ax(ax)\n'
        'def lr_find(f):\n    "Sweep the rate."\n    f.plot()\n'
        'def fit(out):\n    "Train and plot."\n    plt.savefig(out)\n'
        'class L:\n    def fit(self):\n        "Train."\n'
        '    def fit_one_cycle(self):\n        "One cycle."\n        self.fit()\n')
    d = hooks.drawers(tmp_path/'pkg')
    assert d == {'plot': 'Loss against rate.', 'plot_loss': 'Loss per batch.', 'lr_find': 'Loss against rate.'}, d

def test_patched_methods_belong_to_their_class(tmp_path):
    (tmp_path/'pkg').mkdir()
    (tmp_path/'pkg'/'a.py').write_text('__all__ = ["K"]\nclass K:\n    def fit(self): pass\n')
    (tmp_path/'pkg'/'b.py').write_text('from fastcore.basics import patch\nfrom .a import *\n__all__ = ["g", "one"]\n'
        'def g(): pass\n@patch\ndef one(self:K): pass\n@patch\ndef _hid(self:K): pass\n')
    a, b = hooks.modules(tmp_path/'pkg')
    assert a.names == ['K', 'K.fit', 'K.one'] and b.names == ['g'] and b.adds == ['K.one']
    link = hooks.Linker([a, b], {}, order={'pkg.a': 1, 'pkg.b': 2})
    assert link.at('pkg.b', 2)('`one` and `K.one`') == '[`one`][pkg.a.K.one] and [`K.one`][pkg.a.K.one]'
    assert link.at('pkg.a', 1)('`one`') == '[`one`][pkg.a.K.one]'       # a bare method name, from its class's page on
    assert link.at(None, 0)('`fit` and `g`') == '`fit` and [`g`][pkg.b.g]'  # before the class's chapter: plain code

def test_chapter_links_read_as_titles():
    link = hooks.Linker([], {'04_init': 'init.md'}, titles={'04_init': 'Initialization'})
    pg = hooks.Page(FIX/'x.ipynb', 'x.md', 'x', None)
    from execnb.nbio import mk_cell
    md = hooks.Renderer(pg, link).markdown(mk_cell('See `04_init`, [04_init](04_init.ipynb) and [the notebook](04_init.ipynb).', 'markdown'), 0)
    assert md == 'See [Initialization](init.md), [Initialization](init.md) and [the notebook](init.md).'

def test_griffe_moves_patched_methods_and_shows_values(tmp_path):
    import griffe
    (tmp_path/'pkg').mkdir()
    (tmp_path/'pkg'/'__init__.py').write_text('')
    (tmp_path/'pkg'/'a.py').write_text('__all__ = ["K", "E"]\nS = ("x", "y")\nE = tuple(f"before_{s}" for s in S)\n'
        'class K:\n    "A class."\n    def __init__(self, n:int, # how many\n                 ): pass\n')
    (tmp_path/'pkg'/'b.py').write_text('from fastcore.basics import patch\nfrom .a import *\n__all__ = ["g"]\n'
        'def g(): pass\n@patch\ndef one(self:K, x:int, # the input\n        ):\n    "Add one."\n')
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        loader = griffe.GriffeLoader(search_paths=[str(tmp_path)], extensions=griffe.load_extensions(gd.Docments))
        pkg = loader.load('pkg')
    finally: sys.path.remove(str(tmp_path))
    K = pkg['a'].members['K']
    assert 'one' in K.members and 'one' not in pkg['b'].members
    one = K.members['one']
    assert one.path == 'pkg.a.K.one' and one.relative_filepath.name == 'b.py' and one.source.startswith('@patch')
    assert one.docstring.value.startswith('Added to [`K`][pkg.a.K] by `pkg.b`.')  # linked to the class
    assert [s.kind.value for s in one.docstring.parsed] == ['text', 'parameters']
    assert [s.kind.value for s in K.members['__init__'].docstring.parsed] == ['parameters']
    assert str(pkg['a'].members['E'].value) == "('before_x', 'before_y')"
    assert gd.short_value('(1, 2)', (1, 2)) is None and gd.short_value('f()', object()) is None

def test_python_inventory(tmp_path):
    assert hooks.python_inventory(tmp_path) is None
    (tmp_path/'python3.11'/'html').mkdir(parents=True)
    (tmp_path/'python3.11'/'html'/'objects.inv').write_bytes(b'# Sphinx inventory version 2\n')
    inv = hooks.python_inventory(tmp_path)
    assert inv['url'].startswith('file:///') and inv['url'].endswith('/python3.11/html/objects.inv')
    assert inv['base_url'] == 'https://docs.python.org/3.11/'


def test_machinery_and_exercises_have_their_own_groups(tmp_path):
    "Pages of the library's machinery (files, state, ranks, ...) sit apart from the chapters; the exercises with the guides."
    import shutil
    for name in ('index', '00_alpha', '04b_files', '04c_state', '05c_core_cbs', '06_beta', '15_exercises'):
        shutil.copy(FIX/'00_fixture.ipynb', tmp_path/f'{name}.ipynb')
    nav = {k: v for d in hooks.Site(ROOT, tmp_path).nav() for k, v in d.items()}
    assert [list(d.values())[0] for d in nav['Chapters']] == ['alpha.md', 'beta.md']
    assert [list(d.values())[0] for d in nav['Machinery']] == ['files.md', 'state.md', 'core_cbs.md']
    assert {'Squares: a fixture': 'exercises.md'} in nav['For the reader']

def test_printed_tables_are_cut_from_prose():
    txt = 'recipe: a long line of prose\nepoch  loss   acc\n0      1.25   0.5\n1      0.75   0.8\ndone in 3s'
    assert hooks.table_runs(txt) == [(False, 'recipe: a long line of prose'),
                                     (True, 'epoch  loss   acc\n0      1.25   0.5\n1      0.75   0.8'),
                                     (False, 'done in 3s')]
    assert hooks.table_runs('one  line  alone') == [(False, 'one  line  alone')]

def test_version_label_follows_the_changelog():
    assert hooks.version_label('0.1.0', '# Changelog\n\n## Unreleased\n\n- x\n\n## 0.1.0\n') == 'v0.1.0+unreleased'
    assert hooks.version_label('0.1.0', '# Changelog\n\n## 0.1.0\n\n- x\n') == 'v0.1.0'

def test_raw_tex_commands_fail_the_build_check():
    "A display formula inside a paragraph reaches the HTML as `[ \\frac{...}` (markdown ate the backslash)."
    assert hooks.raw_maths('<p>receives [ G = \\frac{\\partial L}{\\partial y} ]</p>')
    assert not hooks.raw_maths('<p>text</p><pre><code>\\frac{a}{b}</code></pre><div class="arithmatex">\\[x\\]</div>')

def test_downloaded_notebook_leaves_out_the_export_cell(tmp_path):
    import json
    fn = tmp_path/'00_x.ipynb'
    cells = [{'cell_type': 'code', 'source': ['1 + 1'], 'metadata': {}, 'outputs': [], 'execution_count': None},
             {'cell_type': 'code', 'source': ['#| hide\n', 'import nbdev\n', 'nbdev.nbdev_export()'],
              'metadata': {}, 'outputs': [], 'execution_count': None}]
    fn.write_text(json.dumps({'cells': cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    nb = json.loads(hooks.download_nb(fn))
    assert [''.join(c['source']) for c in nb['cells']] == ['1 + 1']
