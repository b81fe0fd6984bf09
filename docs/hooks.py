"""The docs site is the notebooks: an mkdocs hook that turns every `nbs/*.ipynb` into a page.

mkdocs runs this file (`hooks:` in mkdocs.yml). Nothing it makes is written into `docs/`: the pages, their figures
and the API reference exist only inside the build, as generated files. The one file it writes is `README.md`, from
`nbs/index.ipynb`, so that GitHub shows the same home page.

- A notebook's page: its prose, its code (directive lines removed) and its saved outputs, with nbdev's processors
  hiding `#| hide` cells; Quarto's `include: false`, `echo: false`, `output: false` and `code-fold` are honoured.
- Figures become PNG files next to the page; show_doc's markdown is rendered as markdown.
- Inline code naming a public name of the package, a module or a notebook links to its reference or page.
- `api/<module>.md`: one mkdocstrings page per module of the package, listed under "API reference".
- The nav follows the notebooks' names (`00_`, `01_`, ...) and takes each title from the notebook's H1.
"""
from __future__ import annotations
import ast, base64, html, json, logging, os, re
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger('mkdocs.hooks.notebooks')
ROOT = Path(__file__).resolve().parent.parent

# --- the project: settings.ini, the notebooks, the package's modules -------------------------------------------

def settings(root:Path=ROOT) -> dict:
    "The `[DEFAULT]` section of nbdev's settings.ini."
    cp = ConfigParser(delimiters=['=']); cp.read(root/'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT'])

def numbered(fn:Path) -> bool:
    "A chapter, numbered by its layer of the library (`06_learner`), rather than a guide (`tutorial`) or the home page."
    return bool(re.match(r'\d', fn.stem))

def notebooks(nbs:Path) -> list[Path]:
    """The notebooks that make the site: `index.ipynb` first, then the unnumbered ones (`tutorial.ipynb`: read
    before the chapters), then the chapters in their numeric order."""
    fns = sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    return sorted(fns, key=lambda p: (p.stem != 'index', numbered(p)))

def page_uri(fn:Path) -> str:
    "Where notebook `fn`'s page lives in the site: `00_matmul.ipynb` -> `matmul.md` (nbdev drops the number too)."
    return 'index.md' if fn.stem == 'index' else re.sub(r'^\d+[a-z]?_', '', fn.stem) + '.md'

@dataclass
class Module:
    name:str  # dotted name, e.g. `fastfound.matmul`
    path:Path
    doc:str = ''
    names:list = field(default_factory=list)  # public names: `__all__`, and `Class.method` for their public methods
    adds:list = field(default_factory=list)   # `Class.method` for the methods this module `@patch`es onto a class
    reexports:list = field(default_factory=list)  # modules it star-imports (`from .learner import *`)
    others:list = field(default_factory=list)  # names in its `__all__` that another module defines
    @property
    def uri(self): return 'api/' + self.name.split('.', 1)[-1] + '.md'

def _all_names(tree) -> list[str]:
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(getattr(t, 'id', None) == '__all__' for t in
                (node.targets if isinstance(node, ast.Assign) else [node.target])):
            try: return [str(o) for o in ast.literal_eval(node.value)]
            except ValueError: return []
    return []

def _defined(tree) -> dict:
    "Top-level names that `tree` defines, each with its node."
    res = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): res[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                for n in ast.walk(t):
                    if isinstance(n, ast.Name): res[n.id] = node
    return res

def patched(tree) -> list[tuple[str, str]]:
    "`(class, method)` for each function in `tree` that fastcore's `@patch` attaches (`def f(self:Learner, ...)`)."
    res = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.args.args: continue
        decs = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
        if not any(getattr(d, 'id', getattr(d, 'attr', None)) == 'patch' for d in decs): continue
        ann = node.args.args[0].annotation
        cls = getattr(ann, 'id', getattr(ann, 'attr', None)) or (ann.value if isinstance(ann, ast.Constant) else None)
        if isinstance(cls, str): res.append((cls.split('.')[-1], node.name))
    return res

def _absolute(node:ast.ImportFrom, module:str) -> str:
    "The module an `import from` names, absolute: `from .learner import *` in `fastfound.all` -> `fastfound.learner`."
    if not node.level: return node.module or ''
    base = module.split('.')[:-node.level]
    return '.'.join(base + ([node.module] if node.module else []))

def modules(lib:Path) -> list[Module]:
    """Every module of the package at `lib` (private ones, `_*.py`, left out) with its public names.
    A method that a module `@patch`es onto a class is listed with the class's module (`Learner.fit_one_cycle` under
    `fastfound.learner`, where the reference documents it) and in the patching module's `adds`."""
    res, trees = [], {}
    for p in sorted(lib.rglob('*.py')):
        rel = p.relative_to(lib.parent).with_suffix('')
        if any(part.startswith('_') for part in rel.parts[1:]) or '__pycache__' in rel.parts: continue
        tree = trees[p] = ast.parse(p.read_text(encoding='utf-8'))
        defs, names, others = _defined(tree), [], []
        for nm in _all_names(tree):
            if nm not in defs:  # re-exported from a lower module, or made dynamically
                others.append(nm)
                continue
            names.append(nm)
            if isinstance(defs[nm], ast.ClassDef):
                names += [f'{nm}.{o.name}' for o in defs[nm].body
                          if isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef)) and not o.name.startswith('_')]
        name = '.'.join(rel.parts)
        stars = [_absolute(n, name) for n in tree.body if isinstance(n, ast.ImportFrom) and
                 any(a.name == '*' for a in n.names)]
        res.append(Module(name, p, ast.get_docstring(tree) or '', names, reexports=stars, others=others))
    owner = {}  # class name -> the module that exports it
    for m in res:
        for n in m.names:
            if '.' not in n and isinstance(_defined(trees[m.path]).get(n), ast.ClassDef): owner.setdefault(n, m)
    for m in res:
        for cls, meth in patched(trees[m.path]):
            if cls not in owner or meth.startswith('_'): continue
            if meth in m.names: m.names.remove(meth)  # exported too: documented under its class all the same
            if f'{cls}.{meth}' not in owner[cls].names: owner[cls].names.append(f'{cls}.{meth}')
            if owner[cls] is not m: m.adds.append(f'{cls}.{meth}')
    return res

# --- one notebook to markdown ---------------------------------------------------------------------------------

_re_directive = re.compile(r'^\s*#\|.*$\n?', re.MULTILINE)
_re_fence = re.compile(r'^(\s*)(```+|~~~+)')
_re_code = re.compile(r'(?<![\[`])`([^`\n]+)`(?![`\]])')
_re_link = re.compile(r'\[([^\]]*)\]\(([^)#\s]+)\.ipynb(#[^)\s]*)?\)')
_re_h1 = re.compile(r'^#\s+(.+?)\s*#*\s*$', re.MULTILINE)
_re_ansi = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_re_sd = re.compile(r'^\s*show_doc\s*\(')

def _text(x) -> str: return x if isinstance(x, str) else ''.join(x)

def _fence(text:str, lang:str='') -> str:
    "`text` in a fenced code block whose fence is longer than any backtick run inside."
    n = max([3] + [len(m) + 1 for m in re.findall(r'`{3,}', text)])
    return f"{'`'*n}{lang}\n{text.rstrip()}\n{'`'*n}"

def quarto_opts(cell):
    "Honour Quarto's cell options the way Quarto would: `include`, `echo`, `output`, `code-fold`."
    if cell.cell_type != 'code': return
    d = {k.rstrip(':'): (v[0].lower() if v else '') for k, v in cell.directives_.items()}
    if d.get('include') == 'false': del cell['source']; return
    if d.get('output') == 'false': cell['outputs'] = []
    cell.echo_ = d.get('echo', 'true') != 'false' and not _re_sd.match(cell.source or '')
    cell.fold_ = d.get('code-fold', 'false') in ('true', 'show')

def process(nb):
    "Apply nbdev's own processors and ours to `nb`: what is left is what the page shows."
    from nbdev.process import NBProcessor
    from nbdev.processors import hide_, hide_line, filter_stream_, strip_ansi, rm_header_dash
    return NBProcessor(nb=nb, procs=[hide_, hide_line, filter_stream_, strip_ansi, rm_header_dash, quarto_opts],
                       process=True).nb

class Linker:
    """Turns inline code that names a public name, a module or a notebook into a link.

    A dotted name (`Learner.fit`) links to its entry. A bare name links, in this order, to: a name of the page's own
    module (`fit` on the Learner page is `Learner.fit`); a name some module exports; a method of a class by its bare
    name (`fit_one_cycle`, `lr_find`), but only on pages from that class's notebook on, so that `backward` in the
    backprop chapter stays plain code."""
    def __init__(self, mods:list, pages:dict, style:str='site', base:str='', order:dict|None=None,
                 titles:dict|None=None):
        self.refs, self.pages, self.style, self.base = {}, dict(pages), style, base
        self.titles = titles or {}  # notebook stem -> its page's title: a link to a chapter reads as its title
        self.own, self.methods = {}, {}  # module -> {bare name: ref}; bare method name -> (module, ref)
        self.order = order or {}  # module name -> position of its notebook in the site (for `methods`)
        for m in mods:
            if style == 'site': self.pages.setdefault(m.name, m.uri)  # a module links to its reference page
            own = self.own.setdefault(m.name, {})
            for nm in m.names:
                self.refs.setdefault(nm, f'{m.name}.{nm}')
                own.setdefault(nm.split('.')[-1], f'{m.name}.{nm}')
                if '.' in nm: self.methods.setdefault(nm.split('.')[-1], (m.name, f'{m.name}.{nm}'))
        for m in mods:  # what a module adds to a class lives on the class's page
            for nm in m.adds:
                owner = next((o for o in mods if nm in o.names), None)
                if owner: own = self.own[m.name]; own[nm.split('.')[-1]] = self.refs[nm] = f'{owner.name}.{nm}'
        self.module, self.pos = None, None

    def at(self, module:str|None, pos:int|None=None):
        "Link as seen from the page of `module` (the notebook's `default_exp`), at position `pos` in the site."
        self.module, self.pos = module, pos
        return self

    def target(self, code:str):
        key = code[:-2] if code.endswith('()') else code
        if key in self.pages: return 'page', self.pages[key]
        if self.style != 'site': return None, None
        if '.' not in key and self.module and key in self.own.get(self.module, {}): return 'ref', self.own[self.module][key]
        if key in self.refs: return 'ref', self.refs[key]
        if key in self.methods:
            mod, ref = self.methods[key]
            if self.pos is not None and self.pos >= self.order.get(mod, 1 << 30): return 'ref', ref
        return None, None

    def sub(self, m):
        kind, tgt = self.target(m.group(1))
        if kind == 'page':
            key = m.group(1)[:-2] if m.group(1).endswith('()') else m.group(1)
            text = md_escape(self.titles[key]) if key in self.titles else m.group(0)
            return f'[{text}]({self.base}{tgt})'
        if kind == 'ref': return f'[{m.group(0)}][{tgt}]'
        return m.group(0)

    def __call__(self, md:str) -> str:
        "Link inline code in `md`, leaving fenced code, headings, link texts and tables' code alone."
        out, fence = [], None
        for line in md.split('\n'):
            f = _re_fence.match(line)
            if fence:
                if f and f.group(2)[0] == fence[0] and len(f.group(2)) >= len(fence): fence = None
            elif f: fence = f.group(2)
            elif not line.lstrip().startswith('#'): line = _re_code.sub(self.sub, line)
            out.append(line)
        return '\n'.join(out)

@dataclass
class Page:
    src:Path
    uri:str
    title:str
    module:str|None
    markdown:str = ''
    assets:dict = field(default_factory=dict)  # uri -> bytes: figures and attachments

def title_of(nb, fallback:str) -> str:
    "The notebook's H1, as plain text."
    for c in nb.cells:
        if c.cell_type == 'markdown' and (m := _re_h1.search(_text(c.source))):
            return re.sub(r'`|\*\*|\[([^\]]*)\]\([^)]*\)', r'\1', m.group(1)).strip()
    return fallback

def default_exp(nb) -> str|None:
    for c in nb.cells:
        if c.cell_type == 'code' and (m := re.search(r'^\s*#\|\s*default_exp\s+(\S+)', _text(c.source), re.M)):
            return m.group(1)

# --- figures: what they show (alt text), and their panels ----------------------------------------------------

_re_alt = re.compile(r'^\s*#\s*(?:\|\s*)?(?:fig-alt|alt)\s*:\s*(.+?)\s*$', re.M)
_re_label = re.compile(r'\b(?:set_)?(suptitle|title|xlabel|ylabel)\(\s*(?P<q>[\'"])(.+?)(?P=q)')
_LABEL_CALLS = {'set_title': 'title', 'title': 'title', 'suptitle': 'suptitle', 'set_xlabel': 'xlabel',
                'xlabel': 'xlabel', 'set_ylabel': 'ylabel', 'ylabel': 'ylabel'}

def first_sentence(md:str) -> str:
    "The first sentence of markdown `md`, as plain text (a colon does not end it; a lead-in's final colon is dropped)."
    txt = re.sub(r'```.*?```', ' ', md, flags=re.S)
    txt = re.sub(r'^\s*#.*$', ' ', txt, flags=re.M)  # a heading is not a sentence
    txt = re.sub(r'^\s*(>|[-*]|\d+\.)\s+', '', txt, flags=re.M)
    txt = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', txt)
    txt = re.sub(r'[`*_]|\$', '', ' '.join(txt.split()))
    m = re.match(r'(.+?[.!?])(\s|$)', txt)
    txt = (m.group(1) if m else txt).rstrip(':').strip()
    return txt if len(txt) <= 200 else txt[:200].rsplit(' ', 1)[0] + '…'

def last_sentence(md:str) -> str:
    "The last sentence of markdown `md`'s last paragraph, as plain text: the one nearest what follows it."
    paras = [p for p in re.split(r'\n\s*\n', md) if first_sentence(p)]
    if not paras: return ''
    txt = re.sub(r'[`*_]|\$', '', ' '.join(re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', paras[-1]).split()))
    parts = re.split(r'(?<=[.!?])\s+', txt)
    return first_sentence(parts[-1]) if parts else ''

def _calls(src:str):
    "The calls in the cell's code, in source order; `None` if it is not plain Python (a `%%` magic)."
    try: tree = ast.parse(_re_directive.sub('', src))
    except SyntaxError: return None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))

def _called(n:ast.Call) -> str|None: return getattr(n.func, 'attr', getattr(n.func, 'id', None))

def plot_labels(src:str) -> dict[str, list[str]]:
    """The titles, axis labels and line labels that the cell's code gives its plot: `set_title('means')`,
    `ax.set(xlabel='step', title=...)`, `plot(x, label='train')`. Only literal strings count."""
    calls, res = _calls(src), {}
    if calls is None:  # not Python: the plain patterns
        for kind, _, text in _re_label.findall(src): res.setdefault(kind, []).append(text)
        return res
    def add(kind, v):
        if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.strip():
            res.setdefault(kind, []).append(v.value)
    for n in calls:
        name = _called(n)
        if name in _LABEL_CALLS and n.args: add(_LABEL_CALLS[name], n.args[0])
        for kw in n.keywords:
            if kw.arg == 'label': add('label', kw.value)
            elif name == 'set' and kw.arg in ('title', 'xlabel', 'ylabel'): add(kw.arg, kw.value)
    return {k: list(dict.fromkeys(v)) for k, v in res.items()}

def drawers(lib:Path) -> dict[str, str]:
    """Name -> what it draws, for every function and method of the package at `lib` that draws a figure: the first
    sentence of its docstring, or, for one that draws by calling another (`lr_find` calls `LRFinder.plot`),
    of that one's. A function draws when it uses matplotlib (`plt`, `import matplotlib`) or a private helper that
    does."""
    fns = []  # (name, docstring, draws itself, names it calls)
    for p in sorted(lib.rglob('*.py')):
        try: tree = ast.parse(p.read_text(encoding='utf-8'))
        except (SyntaxError, UnicodeDecodeError): continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): continue
            sub = list(ast.walk(node))
            mpl = any(isinstance(n, ast.Name) and n.id == 'plt' for n in sub) or any(
                isinstance(n, (ast.Import, ast.ImportFrom)) and 'matplotlib' in ast.unparse(n) for n in sub)
            fns.append((node.name, ast.get_docstring(node) or '', mpl,
                        [c for n in sub if isinstance(n, ast.Call) and (c := _called(n)) and c != node.name]))
    helpers = {nm for nm, _, mpl, _ in fns if mpl and nm.startswith('_')}
    desc = [first_sentence(doc) if (mpl or any(c in helpers for c in calls)) and doc else None
            for nm, doc, mpl, calls in fns]
    for _ in range(3):  # a drawer by way of another: that one's description
        known = _unambiguous(fns, desc)
        desc = [d or next((known[c] for c in calls if c in known), None) for d, (_, _, _, calls) in zip(desc, fns)]
    return {k: v for k, v in _unambiguous(fns, desc).items() if not k.startswith('_')}

def _unambiguous(fns, desc) -> dict:
    "Name -> description, for the names whose every definition draws (the CLI's `fit` draws, `Learner.fit` not)."
    res, bad = {}, set()
    for (nm, *_), d in zip(fns, desc):
        if d is None: bad.add(nm)
        else: res.setdefault(nm, d)
    return {k: v for k, v in res.items() if k not in bad}

def fig_alt(src:str, prev_md:str='', drawn:dict|None=None, adjacent:bool=True) -> str:
    """What a figure shows, in this order: the cell's `#| fig-alt: ...` or `# alt: ...` line; else the titles,
    axis labels and line labels the cell's code gives its plot (`set_title('means')`, `ax.set(xlabel='batch')`,
    `label='train'`); else what the package's function that draws it says it draws (`drawn`, from `drawers`);
    else the first sentence of the markdown right before the cell (`prev_md`, `adjacent`), or the last sentence of
    the markdown further up (the one nearest the figure); else 'A figure'. A plot with labels but no title is named
    by its drawer, else by the markdown right before it."""
    if m := _re_alt.search(src): return m.group(1)
    calls = _calls(src) or []
    drawer = next((drawn[c] for c in reversed([_called(n) for n in calls]) if c in (drawn or {})), None)
    labels = plot_labels(src)
    if any(k in labels for k in ('suptitle', 'title', 'xlabel', 'ylabel')):
        what = (', '.join(dict.fromkeys(labels.get('suptitle', []) + labels.get('title', []))) or
                drawer or (first_sentence(prev_md) if adjacent else '') or 'A plot').rstrip('.')
        axes = [f'{a} {", ".join(labels[k])}' for a, k in (('x:', 'xlabel'), ('y:', 'ylabel')) if k in labels]
        lines = f'; lines: {", ".join(labels["label"])}' if 'label' in labels else ''
        return what + (f' ({"; ".join(axes)})' if axes else '') + lines
    return drawer or (first_sentence(prev_md) if adjacent else last_sentence(prev_md)) or 'A figure'

def panels(png:bytes, tol:int=8, min_gap:int=6, min_w:int=100) -> list[tuple[int, int]]:
    """The column ranges of a multi-panel figure's panels (matplotlib's subplots side by side, split where a gap of
    background runs the full height), or `[]` for a figure of one panel."""
    try:
        import io
        import numpy as np
        from PIL import Image
        im = np.asarray(Image.open(io.BytesIO(png)).convert('RGB')).astype(int)
    except Exception: return []
    blank = list((np.abs(im - im[0, 0]).max(axis=2) <= tol).all(axis=0)) + [True]
    segs, start = [], None
    for x, b in enumerate(blank):
        if not b and start is None: start = x
        if b and start is not None: segs.append([start, x]); start = None
    merged = []
    for seg in segs:  # close gaps: a tick label is not a panel
        if merged and seg[0] - merged[-1][1] < min_gap: merged[-1][1] = seg[1]
        else: merged.append(seg)
    grown = []
    for seg in merged:  # a narrow piece (an axis label, ticks) belongs with the panel to its right
        if grown and grown[-1][1] - grown[-1][0] < min_w: grown[-1][1] = seg[1]
        else: grown.append(seg)
    if len(grown) > 1 and grown[-1][1] - grown[-1][0] < min_w: grown[-2][1] = grown.pop()[1]
    if len(grown) < 2: return []
    cuts = [0] + [(a[1] + b[0]) // 2 for a, b in zip(grown, grown[1:])] + [im.shape[1]]
    return list(zip(cuts, cuts[1:]))

def crop_png(png:bytes, x0:int, x1:int) -> tuple[bytes, int, int]:
    import io
    from PIL import Image
    im = Image.open(io.BytesIO(png))
    part = im.crop((x0, 0, x1, im.height))
    buf = io.BytesIO(); part.save(buf, format='PNG', optimize=True)
    return buf.getvalue(), part.width, part.height

_re_cols = re.compile(r'\S {2,}\S')

def table_runs(txt:str) -> list[tuple[bool, str]]:
    """`txt` cut into runs of lines: `(True, lines)` for a table, two or more lines in a row whose columns are
    aligned with runs of spaces (a per-epoch table, a printed DataFrame); `(False, lines)` for the rest."""
    lines = txt.rstrip('\n').split('\n')
    cols = [bool(_re_cols.search(l)) for l in lines]
    res, i = [], 0
    while i < len(lines):
        j = i
        while j < len(lines) and cols[j] == cols[i]: j += 1
        tab = cols[i] and j - i >= 2
        if res and res[-1][0] == tab: res[-1] = (tab, res[-1][1] + '\n' + '\n'.join(lines[i:j]))
        else: res.append((tab, '\n'.join(lines[i:j])))
        i = j
    return [(t, x) for t, x in res if x.strip()]

class Renderer:
    "Renders a processed notebook's cells to markdown; figures are collected in `assets`."
    mimes = ('text/markdown', 'image/png', 'image/jpeg', 'image/svg+xml', 'text/html', 'text/plain')
    exts = {'image/png': 'png', 'image/jpeg': 'jpg', 'image/svg+xml': 'svg'}

    def __init__(self, page:Page, link:Linker, img_base:str=''):
        self.page, self.link, self.img_base = page, link, img_base
        self.site = link.style == 'site'  # else plain GitHub markdown, for the README
        self.dir = page.uri[:-3] + '_files' if page.uri != 'index.md' else 'index_files'
        self.prev_md, self.alt = '', 'A figure'  # the markdown before the cell; its figures' alt text
        self.adjacent = False  # whether that markdown is the cell right before
        self.drawn = getattr(link, 'drawn', {})  # what the package's plot functions draw (set by `Site`)

    def asset(self, name:str, data:bytes) -> str:
        uri = f'{self.dir}/{name}'
        self.page.assets[uri] = data
        return self.img_base + uri

    def markdown(self, cell, i) -> str:
        src = _text(cell.source)
        for nm, att in (cell.get('attachments') or {}).items():
            mime = next((m for m in self.exts if m in att), None)
            if mime:
                data = base64.b64decode(_text(att[mime]))
                uri = self.asset(f'cell{i}_{nm}' if '.' in nm else f'cell{i}_{nm}.{self.exts[mime]}', data)
                src = src.replace(f'attachment:{nm}', uri)
        return self.link(escape_dunders(_re_link.sub(self.nb_link, src)))

    def nb_link(self, m) -> str:
        "A link to another notebook goes to its page; to a notebook not (yet) in nbs/, it is left as text."
        text, stem, frag = m.group(1), Path(m.group(2)).name, m.group(3) or ''
        if text.strip('`*_ ').removesuffix('.ipynb') == stem and stem in self.link.titles:
            text = md_escape(self.link.titles[stem])  # a chapter is named by its title, not its file
        if stem in self.link.pages: return f'[{text}]({self.link.base}{self.link.pages[stem]}{frag})'
        log.info(f'{self.page.src.name} links to {stem}.ipynb, which is not in nbs/: shown as text')
        return text

    def figure(self, raw:bytes, ext:str, i:int, j:int, alt:str) -> str:
        "A figure as a markdown image; in the site, one opening at full size, and split into panels if it has them."
        uri = self.asset(f'cell{i}_out{j}.{ext}', raw)
        alt = alt.replace('[', '(').replace(']', ')')
        if not self.site: return f'![{alt}]({uri})'
        ps = panels(raw) if ext == 'png' else []
        if not ps: return f'[![{alt}]({uri})]({uri}){{.glightbox .nb-fig}}'
        imgs = []
        for k, (x0, x1) in enumerate(ps):
            data, w, h = crop_png(raw, x0, x1)
            p = self.asset(f'cell{i}_out{j}_panel{k}.png', data)
            imgs.append(f'[![{alt} (panel {k+1} of {len(ps)})]({p}){{width="{w}" height="{h}"}}]({uri})'
                        f'{{.glightbox .nb-fig}}')
        return f'<div class="nb-panels" markdown>\n{"".join(imgs)}\n</div>'

    def printed(self, txt:str) -> str:
        "Printed text: prose-like lines wrap; a table (columns aligned with spaces) keeps its lines and scrolls."
        if not self.site: return _fence(txt, 'text')
        return '\n\n'.join(f'<div class="nb-cols" markdown>\n\n{_fence(t, "text")}\n\n</div>' if tab
                           else _fence(t, 'text') for tab, t in table_runs(txt))

    def output(self, o, i, j) -> str:
        kind = o.get('output_type')
        if kind == 'stream':
            txt = _re_ansi.sub('', _text(o.get('text', '')))
            return self.printed(txt) if txt.strip() else ''
        if kind == 'error':
            return _fence(_re_ansi.sub('', '\n'.join(o.get('traceback', []))), 'text')
        data = o.get('data', {})
        mime = next((m for m in self.mimes if m in data), None)
        if mime is None: return ''
        val = data[mime]
        if mime == 'text/markdown': return _re_link.sub(self.nb_link, _text(val)).strip()  # (a table of chapters)
        if mime in self.exts:
            raw = _text(val).encode() if mime == 'image/svg+xml' else base64.b64decode(_text(val))
            return self.figure(raw, self.exts[mime], i, j, self.alt)
        if mime == 'text/html':
            val = re.sub(r'(?is)<script.*?</script>', '', _text(val)).strip()
            return f'<div class="nb-html">\n{val}\n</div>' if self.site else val
        return self.printed(_re_ansi.sub('', _text(val)))

    def code(self, cell, i) -> str:
        self.alt = fig_alt(_text(cell.source), self.prev_md, self.drawn, self.adjacent)
        src = _re_directive.sub('', _text(cell.source)).strip('\n')
        parts = []
        if src.strip() and getattr(cell, 'echo_', True):
            block = _fence(src, 'python')
            parts.append(f'<details class="nb-fold" markdown>\n<summary>Code</summary>\n\n{block}\n\n</details>'
                         if getattr(cell, 'fold_', False) else block)
        outs = '\n\n'.join(s for j, o in enumerate(cell.get('outputs', [])) if (s := self.output(o, i, j)))
        if outs: parts.append(f'<div class="nb-output" markdown>\n\n{outs}\n\n</div>' if self.site else outs)
        return '\n\n'.join(parts)

    def __call__(self, nb) -> str:
        cells, self.prev_md, self.alt = [], '', 'A figure'
        for i, c in enumerate(nb.cells):
            if c.cell_type == 'markdown':
                cells.append(self.markdown(c, i))
                self.prev_md, self.adjacent = _text(c.source), True
            elif c.cell_type == 'code' and (c.get('source') or '').strip():  # (a `#| hide` cell is gone: no source)
                cells.append(self.code(c, i))
                self.adjacent = False
        return '\n\n'.join(c.strip('\n') for c in cells if c.strip()) + '\n'

def full_module(name:str|None, lib:str='fastfound') -> str|None:
    "`learner` -> `fastfound.learner` (a notebook's `default_exp` names the module within the package)."
    return name if not name or '.' in name else f'{lib}.{name}'

def render(fn:Path, link:Linker, img_base:str='', pos:int|None=None, lib:str='fastfound') -> Page:
    "Notebook `fn` as a `Page`: markdown, title, module, figures. `pos`: its place in the site, for the linker."
    from execnb.nbio import read_nb
    nb = read_nb(fn)
    page = Page(fn, page_uri(fn), title_of(nb, fn.stem), default_exp(nb))
    link.at(full_module(page.module, lib), pos)
    page.markdown = Renderer(page, link, img_base)(process(nb))
    return page

_re_dunder = re.compile(r'(?<![\\\w*])__([A-Za-z]\w*?)__(?!\w)')
_re_inline = re.compile(r'(`+)(.+?)\1|\$[^$\n]+\$')

def escape_dunders(md:str) -> str:
    "`super().__init__()` in prose, outside code and maths, would be read as bold `init`: escape the underscores."
    def esc(t): return _re_dunder.sub(r'\\_\\_\1\\_\\_', t)
    def line(l):
        out, last = [], 0
        for m in _re_inline.finditer(l): out += [esc(l[last:m.start()]), m.group(0)]; last = m.end()
        return ''.join(out + [esc(l[last:])])
    out, fence = [], None
    for l in md.split('\n'):
        f = _re_fence.match(l)
        if fence:
            if f and f.group(2)[0] == fence[0] and len(f.group(2)) >= len(fence): fence = None
        elif f: fence = f.group(2)
        else: l = line(l)
        out.append(l)
    return '\n'.join(out)

def md_escape(text:str) -> str:
    "Plain text (a title) as markdown that shows it as written: `super().__init__()` stays, not bold `init`."
    return re.sub(r'([\\`*_\[\]<>])', r'\\\1', text)

# --- the site ------------------------------------------------------------------------------------------------

# A reference page ranks above a chapter that mentions the same name: searching `lr_find` finds its entry first.
API_FRONT = '---\nsearch:\n  boost: 4\n---\n\n'

def api_page(m:Module, nb_page:Page|None, mods:list=()) -> str:
    intro = f'Introduced in [{md_escape(nb_page.title)}](../{nb_page.uri}).\n\n' if nb_page else ''
    if m.adds:
        intro += ('Adds to its class, documented there: ' +
                  ', '.join(f'[`{n}`][{o.name}.{n}]' for n in m.adds for o in mods if n in o.names) + '.\n\n')
    if not m.names:  # a module that only re-exports (`fastfound.all`): its docstring, and where its names live
        if m.reexports:
            intro += ('It defines nothing of its own: it re-exports the public names of ' +
                      ', '.join(f'[`{n}`]({o.uri[4:]})' for n in m.reexports for o in mods if o.name == n) + '.\n\n')
        return f'{API_FRONT}# `{m.name}`\n\n{intro}::: {m.name}\n    options:\n      members: false\n'
    if m.others:  # names it re-exports are documented where they are defined
        own = ''.join(f'\n        - {n}' for n in m.names if '.' not in n)
        return f'{API_FRONT}# `{m.name}`\n\n{intro}::: {m.name}\n    options:\n      members:{own}\n'
    return f'{API_FRONT}# `{m.name}`\n\n{intro}::: {m.name}\n'

def api_index(mods:list, by_mod:dict) -> str:
    rows = ['| module | notebook | public names |', '|---|---|---|']
    for m in mods:
        p = by_mod.get(m.name)
        nb = f'[{md_escape(p.title)}](../{p.uri})' if p else ''
        nms = ', '.join(f'[`{n}`][{m.name}.{n}]' for n in m.names if '.' not in n)
        rows.append(f'| [`{m.name}`]({m.uri[4:]}) | {nb} | {nms} |')
    body = '\n'.join(rows) if mods else 'The package has no public modules yet.'
    return ('# API reference\n\nEvery public name of every module, with its signature and docstring. '
            'Each notebook page tells the story; these pages are for looking things up.\n\n' + body + '\n\n'
            '## Links to Python and PyTorch\n\n'
            'Names from Python\'s standard library in signatures and docstrings (`pathlib.Path`, say) link to '
            'docs.python.org, through Python\'s own inventory of its docs, which the build reads offline from '
            'Debian\'s `python3.11-doc` package. PyTorch\'s names (`torch.Tensor`, `nn.Module`) are not linked: '
            'PyTorch publishes its inventory only on its website, and no package in Debian or PyPI ships it, so '
            'a build that reaches only package registries cannot have it.\n')

# --- maths: KaTeX, copied into the site from a registry's package, and a check that nothing is left raw ----------

# Where KaTeX's built files are: Debian's libjs-katex (+ fonts-katex), or npm's `katex` package in node_modules/.
KATEX_DIRS = ('/usr/share/javascript/katex', 'node_modules/katex/dist')
KATEX_URI = 'assets/katex'

def katex_files(root:Path=ROOT) -> dict[str, Path]:
    "Site uri -> file, for KaTeX's script, stylesheet and fonts. Missing KaTeX is an error, naming the fix."
    dirs = [Path(d) for d in ([os.environ['KATEX_DIR']] if os.environ.get('KATEX_DIR') else [])]
    dirs += [d if d.is_absolute() else root/d for d in map(Path, KATEX_DIRS)]
    for d in dirs:
        if (d/'katex.min.js').is_file() and (d/'katex.min.css').is_file() and (d/'fonts').is_dir():
            res = {f'{KATEX_URI}/{n}': d/n for n in ('katex.min.js', 'katex.min.css')}
            for f in sorted((d/'fonts').resolve().glob('KaTeX_*')):
                if f.suffix in ('.woff2', '.woff', '.ttf'): res[f'{KATEX_URI}/fonts/{f.name}'] = f
            if any(u.endswith('.woff2') for u in res): return res
    raise FileNotFoundError('KaTeX is not installed: `make sysdeps` (Debian: apt-get install libjs-katex fonts-katex), '
                            f'or set KATEX_DIR; looked in {[str(d) for d in dirs]}')

_re_unrendered = [re.compile(r'(?is)<(pre|code|script|style|textarea)\b.*?</\1>'),
                  re.compile(r'(?is)<(span|div) class="arithmatex">.*?</\1>'),
                  re.compile(r'(?s)<[^>]*>')]
# delimiters left over, or a TeX command in plain text (`\frac`, `\partial`): what shows when markdown ate a `\[`
_re_raw_math = re.compile(r'\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\s][^$<]*?[\\^_{}][^$<]*?\$|\\[A-Za-z]{2,}\b')

def raw_maths(html_text:str) -> list[str]:
    """Maths left in a page's HTML outside code and outside arithmatex's elements, which nobody will render: its
    delimiters, or TeX commands (`\\frac`) whose delimiters markdown has eaten (a `\\[` inside a paragraph)."""
    for r in _re_unrendered: html_text = r.sub(' ', html_text)
    text = html.unescape(html_text)
    return [text[max(0, m.start()-30):m.end()+30].replace('\n', ' ') for m in _re_raw_math.finditer(text)]

# --- the callbacks and their events, read from the code at build time -----------------------------------------

_WHEN = {'before': 'at the start of {a} {s}',
         'after': 'when {a} {s} ends normally (not after a cancel or an error)',
         'cleanup': 'whenever {a} {s} ends: normally, cancelled or by an error'}
_STEPS = {'after_pred': 'in every batch, after the model\'s forward pass (`learn.preds`)',
          'after_loss': 'in every batch, after the loss (`learn.loss`)',
          'after_backward': 'in a training batch, after the backward pass (the gradients)',
          'after_step': 'once per optimizer step, in the training batch that stepped, before the gradients are '
                        'zeroed (every `n` batches under `GradAccum`; per batch: `after_backward`, `after_batch`)'}

def _live(name:str, root:Path=ROOT):
    "Module `name` of the package, imported from this checkout (not some other install); the tables read it."
    import importlib
    m = importlib.import_module(name)
    f = Path(getattr(m, '__file__', '') or '').resolve()
    if not f.is_relative_to(root.resolve()):
        raise ImportError(f'{name} was imported from {f}, not from {root}: run the build with PYTHONPATH={root}')
    return m

def callback_api(lib:str='fastfound', mods:list=(), root:Path=ROOT):
    "`(Callback, EVENTS, PIECES, STAGES)` from `fastfound.events`, or from `fastfound.learner` where they used to be."
    have = {m.name for m in mods}
    for name in (f'{lib}.events', f'{lib}.learner'):
        if have and name not in have: continue
        m = _live(name, root)
        if hasattr(m, 'Callback') and hasattr(m, 'EVENTS'):
            return m.Callback, tuple(m.EVENTS), tuple(getattr(m, 'PIECES', ())), tuple(getattr(m, 'STAGES', ()))
    raise ImportError(f'neither {lib}.events nor {lib}.learner defines Callback and EVENTS')

def learner_writes(cls, base) -> list[str]:
    "The Learner attributes that the code of `cls` (and of its bases up to `base`) assigns: `learn.xb = ...`."
    import inspect, textwrap
    res = []
    def sources(c):
        "The class's body, and each of its methods defined elsewhere (a `@patch` from the same or a later cell)."
        yield c
        for f in vars(c).values():
            f = getattr(f, 'fget', f)
            if inspect.isfunction(f): yield f  # (one in the body is read twice: the names are deduplicated)
    for c in cls.__mro__:
        if c is base or c is object or not c.__module__.startswith(base.__module__.split('.')[0]): continue
        for obj in sources(c): res += _writes(obj)
    return list(dict.fromkeys(res))

def _writes(obj) -> list[str]:
    "The Learner attributes that the source of `obj` (a class or a function) assigns: `learn.xb = ...`."
    import inspect, textwrap
    res = []
    try: tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError): return res
    aliases = {'learn'}  # `learn = self.learn`, then `learn.x = ...`
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Attribute) and n.value.attr == 'learn':
            aliases |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    def is_learn(v): return (isinstance(v, ast.Name) and v.id in aliases) or \
        (isinstance(v, ast.Attribute) and v.attr == 'learn' and isinstance(v.value, ast.Name) and v.value.id == 'self')
    for n in ast.walk(tree):
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            for e in (t.elts if isinstance(t, ast.Tuple) else [t]):
                if isinstance(e, ast.Attribute) and is_learn(e.value) and not e.attr.startswith('_'): res.append(e.attr)
        if isinstance(n, ast.Call) and getattr(n.func, 'id', None) == 'setattr' and len(n.args) >= 2 \
                and is_learn(n.args[0]) and isinstance(n.args[1], ast.Constant): res.append(str(n.args[1].value))
    return res

def callbacks_page(mods:list, lib:str='fastfound', root:Path=ROOT) -> str:
    "The index of callbacks and the table of events, both from the code: what `Callback` subclasses the package has."
    Callback, events, pieces, stages = callback_api(lib, mods, root)
    exported = {n: m.name for m in mods for n in m.names if '.' not in n}
    for m in mods:
        try: _live(m.name, root)
        except Exception as e: log.warning(f'callback index: {m.name} does not import ({e}); its callbacks are left out')
    def subs(c): return [c] + [x for s in c.__subclasses__() for x in subs(s)]
    cbs = [c for c in dict.fromkeys(subs(Callback)) if c is not Callback and exported.get(c.__name__) == c.__module__]
    cbs.sort(key=lambda c: (getattr(c, 'order', 0), c.__name__))
    flags = [k for k, v in vars(Callback).items() if k.startswith('run_') and isinstance(v, bool)]
    def ref(c): return f'[`{c.__name__}`][{c.__module__}.{c.__name__}]'
    def code(xs): return ', '.join(f'`{x}`' for x in xs) or '—'
    rows = ['| callback | order | events | replaces | writes on the Learner | flags |', '|---|--:|---|---|---|---|']
    uses = {e: [] for e in events}
    for c in cbs:
        evs = [e for e in events if callable(getattr(c, e, None))]
        for e in evs: uses[e].append(c)
        reps = [p for p in pieces if callable(getattr(c, p, None))]
        writes = learner_writes(c, Callback)
        off = [f'`{f}={getattr(c, f)}`' for f in flags if getattr(c, f) is not getattr(Callback, f)]
        rows.append(f'| {ref(c)} | {getattr(c, "order", 0)} | {code(evs)} | {code(reps)} | {code(writes)} | '
                    f'{", ".join(off) or "—"} |')
    ev_rows = ['| event | when it runs | cancel with | used by |', '|---|---|---|---|']
    cancels = {s: f'Cancel{s.capitalize()}Exception' for s in stages}
    for e in events:
        kind, _, stage = e.partition('_')
        if e in _STEPS: when = _STEPS[e]
        else: when = _WHEN.get(kind, '{a} {s}').format(a='the' if stage == 'fit' else 'each', s=stage)
        cancel = f'`{cancels[stage]}`' if stage in cancels and kind == 'before' else ''
        ev_rows.append(f'| `{e}` | {when} | {cancel} | {", ".join(ref(c) for c in uses[e]) or "—"} |')
    src = f'`{Callback.__module__}`'
    return '\n'.join([
        '# Callbacks and events', '',
        f'> Every callback the package exports, and every event of the training loop: both tables are generated from '
        f'the code ({src}\'s `EVENTS`, and the `Callback` subclasses) each time the site is built.', '',
        'A callback is a class with methods named after events; the learner calls them in the order of their `order` '
        '(lower first). A method named after one of the loop\'s pieces (' + code(pieces) + ') replaces that piece. '
        '"Writes on the Learner" lists the attributes its code assigns on the learner; "flags" shows its `run_*` '
        'flags that differ from `Callback`\'s (`run_valid=False`: it sits out validation).', '',
        '## Callbacks', '', *rows, '',
        '## Events', '',
        'In this order within their stage: `before_<stage>`, the stage\'s body, `after_<stage>`, then '
        '`cleanup_<stage>`. Raising a stage\'s cancel exception skips the rest of that stage: its `after_` event does '
        'not run, its `cleanup_` event does.', '', *ev_rows, ''])

CALLBACKS_URI = 'callback_index.md'
GUIDES = [('Study guide', 'study_guide.md'), ('Further research', 'further_research.md'),
          ('Coming from miniai', 'miniai.md'), ('Training on two machines', 'two_machines.md')]
# for the chapter's reader: pages in docs/ or generated
REFERENCE = [('Callbacks and events', CALLBACKS_URI)]
# Chapters that are the library's machinery rather than the chapter's story: files, state, ranks, shards, interrupts,
# compat, the default callbacks, the everything-at-once import. They get a sidebar group of their own, after the
# chapters.
MACHINERY = re.compile(r'^\d+[a-z]?_(files|state|ranks|shards|interrupts?|compat|core_cbs|all)$')
EXERCISES = re.compile(r'^\d+[a-z]?_exercises$')

def kind(fn:Path) -> str:
    "Where notebook `fn`'s page goes in the sidebar: 'home', 'start', 'chapter', 'machinery' or 'reader'."
    if fn.stem == 'index': return 'home'
    if not numbered(fn): return 'start'
    if EXERCISES.match(fn.stem): return 'reader'
    return 'machinery' if MACHINERY.match(fn.stem) else 'chapter'

NB_DIR = 'notebooks'  # where the site ships the notebooks, for readers to download and run

def download_nb(fn:Path) -> bytes:
    "Notebook `fn` as a reader downloads it: the cell that exports the package (`nbdev_export()`) left out."
    nb = json.loads(fn.read_text(encoding='utf-8'))
    nb['cells'] = [c for c in nb['cells'] if not (c.get('cell_type') == 'code' and
                                                  'nbdev_export(' in ''.join(c.get('source', [])))]
    return (json.dumps(nb, indent=1, ensure_ascii=False) + '\n').encode('utf-8')

README_HEAD = '<!-- This file is generated from nbs/index.ipynb by the docs build (`make docs`): edit the notebook. -->\n\n'

class Site:
    "Everything one build generates, computed once in `on_config`."
    def __init__(self, root:Path=ROOT, nbs:Path|None=None):
        cfg = settings(root)
        self.root = root
        self.nbs = Path(nbs or os.environ.get('FASTFOUND_NBS') or root/cfg.get('nbs_path', 'nbs'))
        self.git_url, self.branch = cfg.get('git_url', '').rstrip('/'), cfg.get('branch', 'main')
        self.mods = modules(root/cfg.get('lib_path', cfg['lib_name']))
        fns = notebooks(self.nbs)
        self.pages_by_stem = {fn.stem: page_uri(fn) for fn in fns}
        lib = cfg['lib_name']
        from execnb.nbio import read_nb
        heads = {fn: read_nb(fn) for fn in fns}  # (read twice, to know every title and module before linking)
        self.titles = {fn.stem: title_of(nb, fn.stem) for fn, nb in heads.items()}
        order = {full_module(default_exp(nb), lib): i for i, nb in enumerate(heads.values()) if default_exp(nb)}
        link = Linker(self.mods, self.pages_by_stem, order=order, titles=self.titles)
        link.drawn = drawers(root/cfg.get('lib_path', cfg['lib_name']))
        # A tutorial comes first but uses the whole library: it links methods by bare name as the last chapter does.
        self.pages = [render(fn, link, pos=i if numbered(fn) or fn.stem == 'index' else len(fns), lib=lib)
                      for i, fn in enumerate(fns)]
        self.by_mod = {full_module(p.module, lib): p for p in self.pages if p.module}
        self.api = {m.uri: api_page(m, self.by_mod.get(m.name), self.mods) for m in self.mods}
        self.api['api/index.md'] = api_index(self.mods, self.by_mod)
        self.version = cfg.get('version', '')
        self.extra = {CALLBACKS_URI: callbacks_page(self.mods, lib, root)}  # generated pages besides the notebooks
        if (root/'CHANGELOG.md').exists(): self.extra['changelog.md'] = (root/'CHANGELOG.md').read_text(encoding='utf-8')

    def nav(self) -> list:
        "Home and Start here; the reader's guides; the chapters; the machinery; then the reference."
        def group(k): return [{p.title: p.uri} for p in self.pages if kind(p.src) == k]
        have = lambda u: u in self.extra or (self.root/'docs'/u).exists()
        guides = [{t: u} for t, u in GUIDES if have(u)]
        guides[2:2] = group('reader')  # the exercises, after the study guide and the research map
        api = [{'Overview': 'api/index.md'}] + [{m.name: m.uri} for m in self.mods]
        ref = [{t: u} for t, u in REFERENCE if have(u)] + [{'API reference': api}]
        tail = [{'Changelog': 'changelog.md'}] if 'changelog.md' in self.extra else []
        named = [('For the reader', guides), ('Chapters', group('chapter')), ('Machinery', group('machinery')),
                 ('Reference', ref)]
        return ([{'Home': 'index.md'}] if group('home') else []) + group('start') + \
            [{t: g} for t, g in named if g] + tail

    def download(self, p:Page) -> str:
        "The line under a notebook page's title: a link to download the notebook and run it."
        if p.uri == 'index.md': return ''
        return (f'<p class="nb-download" markdown>[Download this notebook]'
                f'({NB_DIR}/{p.src.name}){{download="{p.src.name}"}} to run it yourself '
                f'(with fastfound installed).</p>')

    def with_download(self, p:Page) -> str:
        "The page's markdown with the download link after its title and lead (the H1 and its `> ...` summary)."
        link = self.download(p)
        if not link: return p.markdown
        m = re.search(r'^#\s.*\n(?:\s*\n)*(?:>.*\n)*', p.markdown, re.M)
        at = m.end() if m else 0
        return p.markdown[:at] + '\n' + link + '\n\n' + p.markdown[at:]

    def footer(self, p:Page) -> str:
        "A page's closing lines: its module's reference, its source notebook, and the notebook to download."
        bits = []
        mod = next((m for m, q in self.by_mod.items() if q is p), None)
        if m := next((m for m in self.mods if m.name == mod), None): bits.append(f'API reference: [`{mod}`]({m.uri})')
        if self.git_url: bits.append(f'source: [`nbs/{p.src.name}`]({self.git_url}/blob/{self.branch}/nbs/{p.src.name})')
        if p.uri != 'index.md': bits.append(f'[download this notebook]({NB_DIR}/{p.src.name}){{download="{p.src.name}"}}')
        return ('\n\n<p class="nb-footer" markdown>' + ' · '.join(bits) + '</p>\n') if bits else ''

    def readme(self, site_url:str='') -> str|None:
        "README.md's text, from the index notebook: links point into the repository, figures to the site."
        fn = self.nbs/'index.ipynb'
        if not fn.exists(): return None
        pages = {k: f'nbs/{k}.ipynb' for k in self.pages_by_stem}
        if site_url: pages |= {m.name: f'{site_url.rstrip("/")}/{m.uri[:-3]}/' for m in self.mods}  # the published reference
        link = Linker(self.mods, pages, style='readme', titles=self.titles)
        md = render(fn, link, img_base=site_url).markdown
        if site_url:  # a page of docs/ (the study guide) lives on the site, not in the repository
            docs = '|'.join(re.escape(u[:-3]) for _, u in GUIDES + REFERENCE)
            md = re.sub(rf'\]\(({docs})\.md(#[^)]*)?\)', lambda m: f']({site_url.rstrip("/")}/{m.group(1)}/'
                        f'{m.group(2) or ""})', md)
        return README_HEAD + md

def _write_if_changed(fn:Path, text:str):
    if not fn.exists() or fn.read_text(encoding='utf-8') != text: fn.write_text(text, encoding='utf-8')

# --- links to Python's own docs: its Sphinx inventory, read offline from Debian's python3.X-doc ------------------

def python_inventory(doc:Path=Path('/usr/share/doc')) -> dict|None:
    """mkdocstrings' inventory entry for Python's standard library (`pathlib.Path` in a signature links to
    docs.python.org), from Debian's `python3.X-doc` (`make sysdeps`): the running Python's version first. `None`
    when none is installed. (PyTorch publishes its inventory only on its website: no package ships it.)"""
    import sys
    mine = f'python3.{sys.version_info[1]}'
    fns = sorted(doc.glob('python3.*/html/objects.inv'), key=lambda f: f.parent.parent.name != mine)
    if not fns: return None
    return {'url': fns[0].resolve().as_uri(), 'base_url': f'https://docs.python.org/{fns[0].parent.parent.name[6:]}/'}

# --- mkdocs events -------------------------------------------------------------------------------------------

_site: Site|None = None

try: from mkdocs.plugins import event_priority
except ImportError: event_priority = lambda p: (lambda f: f)

@event_priority(50)  # before mkdocstrings reads its handlers' options (the inventories)
def on_config(config):
    global _site
    _site = Site()
    log.info(f'{len(_site.pages)} notebooks, {len(_site.mods)} modules')
    config.nav = _site.nav()
    mk = config.plugins.get('mkdocstrings')
    if mk is not None and (inv := python_inventory()):
        invs = mk.config.handlers.setdefault('python', {}).setdefault('inventories', [])
        if inv not in invs: invs.append(inv)
    elif mk is not None:
        log.warning("Python's inventory is not installed (`make sysdeps`: apt-get install python3.11-doc): "
                    "the reference will not link to Python's docs")
    return config

def on_files(files, config):
    from mkdocs.structure.files import File
    for p in _site.pages:
        if files.get_file_from_path(p.uri): raise ValueError(f'docs/{p.uri} exists: it would hide {p.src.name}')
        files.append(File.generated(config, p.uri, content=_site.with_download(p) + _site.footer(p)))
        if p.uri != 'index.md': files.append(File.generated(config, f'{NB_DIR}/{p.src.name}', content=download_nb(p.src)))
        for uri, data in p.assets.items(): files.append(File.generated(config, uri, content=data))
    for uri, md in (_site.api | _site.extra).items():
        if files.get_file_from_path(uri): raise ValueError(f'docs/{uri} exists: it would hide a generated page')
        files.append(File.generated(config, uri, content=md))
    for uri, fn in katex_files(_site.root).items(): files.append(File.generated(config, uri, abs_src_path=str(fn)))
    if _site.nbs.resolve() == (_site.root/'nbs').resolve() and (readme := _site.readme(config.site_url or '')):
        _write_if_changed(_site.root/'README.md', readme)  # only from the project's own notebooks
    return files

_re_member = re.compile(r'(<h\d id="(?P<id>[\w.]+)" class="doc doc-heading">\s*(?:<code[^>]*></code>)?\s*)'
                        r'(<span class="doc doc-object-name [^"]*">)(?P<name>\w+)</span>')
_re_source = re.compile(r'<details class="quote">')

def qualify_members(html_text:str, module:str) -> str:
    """On a module's reference page, a method's or attribute's heading names its class, `Learner.fit` rather than
    `fit` (what a reader searches for); mkdocstrings' source listings are left out of the search index."""
    def sub(m):
        rest = m.group('id')[len(module) + 1:] if m.group('id').startswith(module + '.') else ''
        owner = rest.rsplit('.', 1)[0] if '.' in rest else ''
        if not owner or rest.rsplit('.', 1)[1] != m.group('name'): return m.group(0)
        return f'{m.group(1)}{m.group(3)}<span class="doc-owner">{owner}.</span>{m.group("name")}</span>'
    return _re_source.sub('<details class="quote" data-search-exclude>', _re_member.sub(sub, html_text))

def on_page_content(html_text, page, config, files):
    "Reference pages: headings that name their class, source listings out of search."
    uri = page.file.src_uri
    if uri.startswith('api/') and uri != 'api/index.md':
        mod = next((m.name for m in (_site.mods if _site else []) if m.uri == uri), None)
        if mod: return qualify_members(html_text, mod)
    return html_text

_re_topic = re.compile(r'(<div class="md-header__topic">\s*<span class="md-ellipsis">\s*)([^<]*?)(\s*</span>)')

def version_label(version:str, changelog:str='') -> str:
    """The version the site documents: settings.ini's, or, when the changelog's newest section is "Unreleased",
    that version followed by the changes made since (`v0.1.0+unreleased`), as the changelog says."""
    top = next((l[3:].strip() for l in changelog.splitlines() if l.startswith('## ')), '')
    return f'v{version}+unreleased' if top.lower() == 'unreleased' else f'v{version}'

def with_version(output:str, version:str, changelog:str='') -> str:
    "The site's name in the header, followed by the version (`version_label`)."
    if not version: return output
    label = version_label(version, changelog)
    tip = (f'fastfound {version} and the unreleased changes in the changelog' if label.endswith('+unreleased')
           else 'fastfound version')
    badge = f'<span class="ff-version" title="{html.escape(tip)}">{html.escape(label)}</span>'
    return _re_topic.sub(lambda m: m.group(1) + m.group(2) + ' ' + badge + m.group(3), output, count=1)

def on_post_page(output, page, config):
    "The version goes into the header; a page whose HTML still holds raw maths outside code fails the build."
    if bad := raw_maths(output):
        from mkdocs.exceptions import PluginError
        raise PluginError(f'{page.file.src_uri}: maths that will show raw (fix the markdown): {bad[:3]}')
    return with_version(output, _site.version if _site else '', (_site.extra.get('changelog.md', '') if _site else ''))

def on_serve(server, config, builder):
    server.watch(str(_site.nbs))
    server.watch(str(ROOT/'fastfound'))
    return server
