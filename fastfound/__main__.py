"`python -m fastfound ...`, the same as the `fastfound` command; what `torchrun -m fastfound fit` runs on each rank."
import os, sys
from .cli import main  # hand-written, like __init__.py: nbdev exports one module per notebook

if __name__ == '__main__':
    rc = main()
    if 'LOCAL_RANK' in os.environ:  # a torchrun rank: skip C++'s exit-time teardown, where gloo's
        sys.stdout.flush()          # threads can abort a rank whose work is done (see 11d)
        sys.stderr.flush()
        os._exit(rc)
    raise SystemExit(rc)
