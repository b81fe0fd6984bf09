"The built wheel installs in a fresh venv with the newest fastcore (2.x), and its modules import and work there."
import subprocess, sys, venv
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent

check = '''
import inspect, fastcore, torch, fastfound
from fastfound.matmul import matmuls, bench_matmul
from fastfound.module import Module
assert int(fastcore.__version__.split('.')[0]) >= 2, fastcore.__version__
assert 'site-packages' in fastfound.__file__, fastfound.__file__
a, b = torch.randn(3, 4), torch.randn(4, 2)
for f in matmuls.values(): torch.testing.assert_close(f(a, b), a @ b)
class Lin(Module):
    def __init__(self, n_in, n_out): self.weight = torch.nn.Parameter(torch.randn(n_out, n_in))
assert str(inspect.signature(Lin)) == '(n_in, n_out)' and list(Lin(2, 3).state_dict()) == ['weight']
print('ok', fastcore.__version__, fastfound.__version__)
'''

def run(*cmd, **kw): return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, timeout=600, **kw)

@pytest.mark.slow
def test_wheel_installs_with_newest_fastcore(tmp_path):
    run(sys.executable, '-m', 'build', '--wheel', '--outdir', tmp_path/'dist', root)
    whl, = (tmp_path/'dist').glob('fastfound-*.whl')
    venv.create(tmp_path/'env', with_pip=True)
    py = tmp_path/'env'/'bin'/'python'
    run(py, '-m', 'pip', 'install', '-q', '--no-compile', '--disable-pip-version-check', '-c', root/'constraints.txt', whl)
    out = run(py, '-c', check, cwd=tmp_path).stdout  # cwd away from the checkout, so the installed copy is imported
    assert out.startswith('ok 2.'), out
