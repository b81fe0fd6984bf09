"""Execute notebooks in `nbs/` and save their outputs in place, the outputs the docs site renders.

    python tools/run_nbs.py                 # every notebook
    python tools/run_nbs.py 00_matmul.ipynb # some of them

Each notebook runs in its own process, from `nbs/`, with every cell executed (`#| notest` cells too,
since their outputs are what the docs show). The first error stops that notebook and is reported
with the notebook's name and the cell's number; the saved notebook is left untouched then.
"""
import subprocess, sys
from pathlib import Path

nbs = Path(__file__).resolve().parent.parent/'nbs'

def run_one(fn:Path):
    "Execute `fn` in this process and write it back with its outputs."
    import os
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.clean import clean_nb
    os.chdir(fn.parent)
    os.environ['IN_TEST'] = '1'  # notebooks can tell a run from an interactive session
    nb = read_nb(fn)
    sh = CaptureShell(fn, mpl_format='png')
    skip = lambda c: c.cell_type != 'code' or 'nbdev_export(' in c.source
    try: sh.run_all(nb, exc_stop=True, preproc=skip)
    except Exception:
        sys.stderr.write(sh.prettytb(fname=fn) + '\n'); sys.exit(1)
    clean_nb(nb)
    write_nb(nb, fn)

def main(names):
    fns = [nbs/n for n in names] if names else sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    failed = []
    for fn in fns:
        r = subprocess.run([sys.executable, __file__, '--one', str(fn)])
        print(('ok     ' if r.returncode == 0 else 'FAILED ') + fn.name, flush=True)
        if r.returncode: failed.append(fn.name)
    if failed: sys.exit(f'notebooks that failed: {", ".join(failed)}')

if __name__ == '__main__':
    if sys.argv[1:2] == ['--one']: run_one(Path(sys.argv[2]))
    else: main(sys.argv[1:])
