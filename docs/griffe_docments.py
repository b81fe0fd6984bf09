"""A Griffe extension for the API reference: what nbdev's way of writing code means, told to mkdocstrings.

- Docments: fastfound documents a parameter with a comment on its line, `def f(x:Tensor, # the input`, and the
  return value with a comment after the signature's `->` annotation. mkdocstrings reads docstrings only, so the
  comments are appended to the docstring as a Google-style `Args:`/`Returns:` section (parsed as Google, so that
  a class's constructor gets the same parameter list as a function).
- `@patch`: a function decorated with fastcore's `patch`, `def fit_one_cycle(self:Learner, ...)`, is a method of
  `Learner`, whichever module defines it. It is moved under its class (its source still shown from its own file),
  after the class's own methods, and its docstring says which module adds it.
- Constants: a module-level name whose source is an expression (`EVENTS = tuple(... for s in STAGES ...)`) shows
  the value the module really computes, when that value is a short literal.
- `__dunder__` names in docstrings are escaped, so that `super().__init__()` is not read as bold.
- Then inline code in any docstring that names a public name of the package (`Learner`, `Learner.fit`, `fit()`,
  or a method by its bare name, `fit_one_cycle`) becomes a link to that name's entry.
"""
from __future__ import annotations
import ast, importlib, io, re, tokenize
import griffe

_re_code = re.compile(r'(?<![\[`])`([A-Za-z_][\w.]*)(\(\))?`(?![`\]])')
_re_fence = re.compile(r'^\s*(```|~~~)')
_re_dunder = re.compile(r'(?<![\\\w*])__([A-Za-z]\w*?)__(?!\w)')
_re_inline = re.compile(r'(`+)(.+?)\1')

def public_refs(mods) -> dict[str, str]:
    "Name -> full path, for every name in the modules' `__all__`, their classes' public methods, and those by bare name."
    refs, bare = {}, {}
    for m in mods:
        for n in (m.exports or []):
            o = m.members.get(n)
            if o is None or o.is_alias: continue
            refs.setdefault(n, o.path)
            if o.is_class:
                for k, f in o.members.items():
                    if not k.startswith('_') and not f.is_alias and f.is_function:
                        refs.setdefault(f'{n}.{k}', f.path)
                        if f.extra.get('fastfound', {}).get('patched_from'): bare.setdefault(k, f.path)
    for k, v in bare.items(): refs.setdefault(k, v)  # a name a module exports wins over a method's bare name
    return refs

def _outside_code(text:str, fn) -> str:
    "Apply `fn` to the parts of markdown `text` that are neither fenced nor inline code."
    out, fenced = [], False
    for line in text.split('\n'):
        if _re_fence.match(line): fenced = not fenced
        elif not fenced:
            parts, last = [], 0
            for m in _re_inline.finditer(line):
                parts += [fn(line[last:m.start()]), m.group(0)]
                last = m.end()
            line = ''.join(parts + [fn(line[last:])])
        out.append(line)
    return '\n'.join(out)

def escape_dunders(text:str) -> str:
    "`super().__init__()` outside code would be read as bold `init`: escape its underscores."
    return _outside_code(text, lambda s: _re_dunder.sub(r'\\_\\_\1\\_\\_', s))

def link_code(text:str, refs:dict, own:str='') -> str:
    "Inline code naming a public name becomes an autorefs link (fenced code and the object's own name left alone)."
    out, fenced = [], False
    for line in text.split('\n'):
        if _re_fence.match(line): fenced = not fenced
        elif not fenced:
            line = _re_code.sub(lambda m: f'[{m.group(0)}][{refs[m.group(1)]}]'
                                if m.group(1) in refs and refs[m.group(1)] != own else m.group(0), line)
        out.append(line)
    return '\n'.join(out)

def _walk(obj):
    "`obj` and every object defined in it (aliases, i.e. imported names, left out)."
    yield obj
    for m in list(obj.members.values()):
        if not m.is_alias: yield from _walk(m)

def _comments(lines:list[str], first:int, last:int) -> dict[int, str]:
    "Line number -> the comment on it, for lines `first..last` (1-based), read with Python's own tokenizer."
    res = {}
    src = ''.join(l + '\n' for l in lines[first-1:last])
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT: res[first + tok.start[0] - 1] = tok.string.lstrip('#').strip()
    except (tokenize.TokenError, IndentationError, SyntaxError): pass
    return res

def docments(node:ast.FunctionDef, lines:list[str]) -> tuple[dict[str, str], str]:
    "The per-parameter comments of `node` and the comment on its return annotation."
    a = node.args
    params = a.posonlyargs + a.args + ([a.vararg] if a.vararg else []) + a.kwonlyargs + ([a.kwarg] if a.kwarg else [])
    if not params and not node.returns: return {}, ''
    body = node.body[0].lineno if node.body else node.end_lineno
    coms = _comments(lines, node.lineno, body)
    defaults = dict(zip([p.arg for p in (a.posonlyargs + a.args)][::-1], a.defaults[::-1]))
    defaults.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
    res, taken = {}, set()
    for p in params:
        end = max(p.end_lineno, getattr(defaults.get(p.arg), 'end_lineno', 0) or 0)
        if end in coms and end not in taken and p.arg not in ('self', 'cls'):
            res[p.arg] = coms[end]; taken.add(end)
    ret = ''
    if node.returns is not None and node.returns.end_lineno in coms and node.returns.end_lineno not in taken:
        ret = coms[node.returns.end_lineno]
    return res, ret

# --- @patch: a function that fastcore attaches to a class is documented as that class's method -----------------

class PatchedMethod(griffe.Function):
    "A function moved under the class it patches; its file is still the module that defines it."
    @property
    def _origin(self): return self.extra['fastfound']['origin']
    @property
    def filepath(self): return self._origin.filepath
    @property
    def relative_filepath(self): return self._origin.relative_filepath
    @property
    def relative_package_filepath(self): return self._origin.relative_package_filepath

class PatchedProperty(griffe.Attribute):
    "A `@patch(as_prop=True)` function: a property of its class, shown as one (`name: type`), like `@property`."
    _origin = PatchedMethod._origin
    filepath = PatchedMethod.filepath
    relative_filepath = PatchedMethod.relative_filepath
    relative_package_filepath = PatchedMethod.relative_package_filepath

def as_property(f):
    "The property that `@patch(as_prop=True)` function `f` makes: an attribute typed by its return annotation."
    a = PatchedProperty(f.name, lineno=f.lineno, endlineno=f.endlineno, annotation=f.returns)
    a.labels.add('property')
    a.extra.update(f.extra)
    if f.docstring is not None: a.docstring, f.docstring.parent = f.docstring, a
    return a

def patch_target(f) -> str|None:
    "The class name a `@patch`ed function `f` is attached to (its first parameter's annotation), else None."
    decs = [str(d.value.function if isinstance(d.value, griffe.ExprCall) else d.value) for d in f.decorators]
    if not any(d.split('.')[-1] == 'patch' for d in decs) or not f.parameters: return None
    ann = f.parameters[0].annotation
    return str(ann).split('.')[-1].strip('\'"') if ann is not None else None

def move_patched(mods:list) -> dict[str, list]:
    "Move every `@patch`ed function under its class. Returns class path -> the names moved there, in order."
    classes = {}
    for m in mods:
        for n, o in m.members.items():
            if not o.is_alias and o.is_class: classes.setdefault(n, o)
    for m in mods:  # a class a module exports wins over one of the same name that it does not
        for n in (m.exports or []):
            if (o := m.members.get(n)) is not None and not o.is_alias and o.is_class: classes[n] = o
    moved = {}
    for m in mods:
        # Every patched function, also one whose name a later `def` reuses (`after_batch` patched on two classes):
        # the module's members keep only the last, so the extension records each as griffe creates it.
        seen = m.extra.get('fastfound', {}).get('patched', [])
        fns = seen + [f for f in m.members.values() if not any(f is g for g in seen)]
        for f in fns:
            n = f.name
            if f.is_alias or not f.is_function or (cls := classes.get(patch_target(f) or '')) is None: continue
            if m.members.get(n) is f: m.del_member(n)
            f.extra.setdefault('fastfound', {}).update(origin=m, patched_from=m.path)
            f.__class__ = PatchedMethod
            if any('as_prop=True' in str(d.value) for d in f.decorators): f = as_property(f)  # a property
            cls.set_member(n, f)
            if cls.module is not m:
                note = f'Added to `{cls.name}` by `{m.path}`.'
                if f.docstring is not None: f.docstring.value = note + '\n\n' + f.docstring.value
                else: f.docstring = griffe.Docstring(note, parent=f, parser=griffe.Parser.google)
            moved.setdefault(cls.path, []).append(n)
    # The class's own members in source order, then what its module patches on, then other modules' additions.
    for path, names in moved.items():
        cls = next(c for c in classes.values() if c.path == path)
        own = sorted((k for k, o in cls.members.items() if k not in names), key=lambda k: cls.members[k].lineno or 0)
        mod_order = {m.path: i for i, m in enumerate(mods)}
        def key(k):
            o = cls.members[k]
            origin = o.extra['fastfound']['origin']
            return (origin is not cls.module, mod_order.get(origin.path, 0), o.lineno or 0)
        cls.exports = own + sorted(names, key=key)
    return moved

# --- constants: the value the module computes --------------------------------------------------------------------

_LITERALS = (tuple, list, dict, set, frozenset, str, bytes, int, float, complex, bool, type(None))

def _is_literal(v, depth=0) -> bool:
    if depth > 4 or not isinstance(v, _LITERALS): return False
    if isinstance(v, dict): return all(_is_literal(k, depth+1) and _is_literal(x, depth+1) for k, x in v.items())
    if isinstance(v, (tuple, list, set, frozenset)): return all(_is_literal(x, depth+1) for x in v)
    return True

def short_value(src:str, value, limit:int=400) -> str|None:
    "What to show for a constant whose source is `src`: its value's repr, when computed, literal and short."
    try:
        ast.literal_eval(src)
        return None  # already a literal: the source says it best
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError): pass
    if not _is_literal(value): return None
    r = repr(value)
    return r if len(r) <= limit else None

def show_values(mods:list):
    "Module-level constants show the value their module computes (where it is a short literal)."
    for m in mods:
        try: live = importlib.import_module(m.path)
        except Exception: continue  # not importable here: the source expression stays
        for n in (m.exports or []):
            o = m.members.get(n)
            if o is None or o.is_alias or not o.is_attribute or o.value is None or not hasattr(live, n): continue
            if (v := short_value(str(o.value), getattr(live, n))) is not None: o.value = v

# --- callbacks' event handlers and step pieces: what they are, when they have no docstring -------------------------

def describe_handlers(obj, events:tuple, pieces:tuple):
    """A class's method named after an event of the training loop (`after_batch`) or one of its step pieces
    (`backward`), without a docstring of its own, says so and links to the table of events."""
    for o in _walk(obj):
        if not (o.is_function and o.parent is not None and o.parent.is_class) or o.docstring: continue
        if o.name in events: text = f'Runs at the `{o.name}` event (see [the events](../callback_index.md#events)).'
        elif o.name in pieces: text = f'Replaces the learner\'s `{o.name}` step piece.'
        else: continue
        o.docstring = griffe.Docstring(text, parent=o, parser=griffe.Parser.google)

def loop_names(pkg:str='fastfound') -> tuple[tuple, tuple]:
    "The training loop's events and step pieces, from the package itself (empty when it does not import)."
    for name in (f'{pkg}.events', f'{pkg}.learner'):
        try: m = importlib.import_module(name)
        except Exception: continue
        if hasattr(m, 'EVENTS'): return tuple(m.EVENTS), tuple(getattr(m, 'PIECES', ()))
    return (), ()

# --- private methods the reader never calls, special methods without a docstring: left out -----------------------

def hide_noise(obj):
    for o in _walk(obj):
        if o.is_function and o.parent is not None and o.parent.is_class and re.fullmatch(r'__\w+__', o.name):
            if o.name != '__init__' and not o.docstring: o.public = False

class Docments(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        mods = [o for o in _walk(pkg) if o.is_module]
        move_patched(mods)
        show_values(mods)
        hide_noise(pkg)
        refs = public_refs(mods)
        for o in _walk(pkg):
            if o.docstring: o.docstring.value = link_code(escape_dunders(o.docstring.value), refs, o.path)
        describe_handlers(pkg, *loop_names(pkg.name))  # (after the links: an event's name is not a method's)

    def on_function_instance(self, *, node, func, agent, **kwargs):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): return
        if func.parent is not None and func.parent.is_module and patch_target(func):
            func.parent.extra.setdefault('fastfound', {}).setdefault('patched', []).append(func)
        try: lines = func.lines_collection[func.filepath]
        except (KeyError, TypeError): return
        params, ret = docments(node, lines)
        if not params and not ret: return
        doc = func.docstring.value if func.docstring else ''
        if 'Args:' in doc or 'Parameters' in doc: return  # written by hand: leave it
        extra = ''
        if params: extra += 'Args:\n' + ''.join(f'    {k}: {v}\n' for k, v in params.items())
        if ret: extra += f'\nReturns:\n    {ret}\n'
        value = (doc.rstrip() + '\n\n' + extra) if doc else extra
        # The sections are Google-style whatever the handler's default: parse them so.
        # The signature carries the types: a parameter without one is not worth a warning.
        opts = {**((func.docstring.parser_options if func.docstring else None) or {}), 'warn_missing_types': False}
        if func.docstring: func.docstring.parser, func.docstring.parser_options = griffe.Parser.google, opts
        else: func.docstring = griffe.Docstring('', parent=func, lineno=node.lineno, endlineno=node.lineno,
                                                parser=griffe.Parser.google, parser_options=opts)
        func.docstring.value = value  # (set, not passed: the constructor's cleandoc would dedent the section's body)
