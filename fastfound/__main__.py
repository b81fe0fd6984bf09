"`python -m fastfound ...`, the same as the `fastfound` command; what `torchrun -m fastfound fit` runs on each rank."
from .cli import main  # hand-written, like __init__.py: nbdev exports one module per notebook

if __name__ == '__main__': raise SystemExit(main())
