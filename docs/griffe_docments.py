"""A Griffe extension for the API reference: nbdev's docments become the docstring's parameter list.

fastfound documents a parameter with a comment on its line, `def f(x:Tensor, # the input`, and the return
value with a comment after the signature's `->` annotation. mkdocstrings reads docstrings only, so this
extension appends those comments to the docstring as a Google-style `Args:`/`Returns:` section.
Then, once the package is loaded, inline code in any docstring that names a public name of the package
(`Learner`, `Learner.fit`, `fit()`) becomes a link to that name's entry.
"""
from __future__ import annotations
import ast, io, re, tokenize
import griffe

_re_code = re.compile(r'(?<![\[`])`([A-Za-z_][\w.]*)(\(\))?`(?![`\]])')
_re_fence = re.compile(r'^\s*(```|~~~)')

def public_refs(mods) -> dict[str, str]:
    "Name -> full path, for every name in the modules' `__all__` and their classes' public methods."
    refs = {}
    for m in mods:
        for n in (m.exports or []):
            o = m.members.get(n)
            if o is None or o.is_alias: continue
            refs.setdefault(n, o.path)
            if o.is_class:
                for k, f in o.members.items():
                    if not k.startswith('_') and not f.is_alias and f.is_function: refs.setdefault(f'{n}.{k}', f.path)
    return refs

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
    for m in obj.members.values():
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

class Docments(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        mods = [o for o in _walk(pkg) if o.is_module]
        refs = public_refs(mods)
        for o in _walk(pkg):
            if o.docstring: o.docstring.value = link_code(o.docstring.value, refs, o.path)

    def on_function_instance(self, *, node, func, agent, **kwargs):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): return
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
        if func.docstring: func.docstring.value = value
        else: func.docstring = griffe.Docstring(value, parent=func, lineno=node.lineno, endlineno=node.lineno,
                                               parser=getattr(agent, 'docstring_parser', None),
                                               parser_options=getattr(agent, 'docstring_options', None))
