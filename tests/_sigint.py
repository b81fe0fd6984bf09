"""Deliver a Ctrl-C at a chosen line, as the SIGINT handler in place would get it: a tracer follows the frames a
`where(frame)` picks and, at the line asked for (and its n-th run), calls the handler with that frame."""
import gc, signal, sys

def traced(fn, where, at=None, hit=None)->list:
    "Run `fn`, recording `((file, line), n)` for each line run in the frames `where` picks; deliver SIGINT at `at`."
    lines, seen = [], {}
    def local(frame, event, arg):
        if event == 'line':
            key = (frame.f_code.co_filename, frame.f_lineno)
            seen[key] = seen.get(key, 0) + 1
            lines.append((key, seen[key]))
            if at is not None and hit is not None and not hit and (key, seen[key]) == at:
                hit.append(key)
                signal.getsignal(signal.SIGINT)(signal.SIGINT, frame)
        return local
    def call(frame, event, arg): return local if where(frame) else None
    gc.disable()  # no cyclic collection (and its finalizers) inside a traced run: runs stay alike
    sys.settrace(call)
    try: fn()
    finally:
        sys.settrace(None)
        gc.enable()
    return lines

def code_named(*names, file=''):
    "A `where` for the frames of functions called `names` in a file whose path ends with `file`."
    return lambda f: f.f_code.co_name in names and f.f_code.co_filename.endswith(file)

def each_line(fn_factory, where, check):
    """For each line `where`'s frames run in `fn_factory()()`, a fresh run with a Ctrl-C there; `check(state, got)`
    with `got` the exception that came out (or None). Returns how many places were tried."""
    state, fn = fn_factory()
    todo = sorted(set(traced(fn, where)))
    for at in todo:
        state, fn = fn_factory()
        hit, got = [], None
        try: traced(fn, where, at, hit)
        except BaseException as e: got = e
        if hit: check(state, got, f'SIGINT at {at[0][0]}:{at[0][1]} (run {at[1]})')
    return len(todo)
