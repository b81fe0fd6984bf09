"`fastfound fit` as a user runs it: a subprocess on the bundled sample, and its bad-argument errors."
import csv, os, subprocess, sys
from pathlib import Path

import pytest, torch

from fastfound.checkpoint import load_learner
from fastfound.cli import main
from fastfound.models import cnn, mlp
from fastfound.data import SAMPLE_PATH

EXE = Path(sys.executable).parent/'fastfound'


def run(*args, **kw):
    exe = [str(EXE)] if EXE.exists() else [sys.executable, '-c', 'import sys; from fastfound.cli import main; sys.exit(main())']
    env = {**os.environ, 'MPLBACKEND': 'Agg'}
    return subprocess.run(exe + list(args), capture_output=True, text=True, env=env, timeout=600, **kw)


def test_fit_one_epoch_on_the_sample(tmp_path):
    out = tmp_path/'run'
    r = run('fit', '--epochs', '1', '--data', str(SAMPLE_PATH), '--device', 'cpu', '--out', str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith('epoch'))
    assert lines[head].split() == ['epoch', 'train_loss', 'valid_loss', 'train_accuracy', 'valid_accuracy', 'time']
    assert lines[head + 1].split()[0] == '0'
    acc = float(next(l for l in lines if l.startswith('test accuracy:')).split()[-1])
    assert 0.5 < acc <= 1                                      # one epoch on 5,000 images: well above chance (0.1)
    assert sorted(p.name for p in out.iterdir()) == ['history.csv', 'loss.png', 'model.pth']
    assert (out/'loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (out/'model.pth').stat().st_mode & 0o777 == (out/'history.csv').stat().st_mode & 0o777
    assert load_learner(out/'model.pth', cnn).meta['model'] == 'cnn'    # the weights load into the CNN
    rows = list(csv.DictReader((out/'history.csv').open()))
    assert len(rows) == 1 and float(rows[0]['valid_accuracy']) == pytest.approx(acc, abs=1e-4)
    assert '\r' not in r.stdout                                # not a terminal: no progress bars


def test_fit_mlp(tmp_path):
    r = run('fit', '--model', 'mlp', '--epochs', '1', '--bs', '128', '--lr', '0.003', '--data', str(SAMPLE_PATH),
            '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert load_learner(tmp_path/'model.pth', mlp).meta['model'] == 'mlp'


@pytest.mark.parametrize('args, msg', [
    (['fit', '--epochs', '0'], '--epochs: must be a positive number'),
    (['fit', '--epochs', 'two'], '--epochs: not a number'),
    (['fit', '--bs', '-1'], '--bs: must be a positive number'),
    (['fit', '--lr', 'nan'], '--lr: must be a positive number'),
    (['fit', '--lr', '-0.1'], '--lr: must be a positive number'),
    (['fit', '--model', 'resnet'], "invalid choice: 'resnet'"),
    (['fit', '--data', '/nowhere'], '--data /nowhere: missing train-images-idx3-ubyte.gz'),
    (['fit', '--device', 'tpu'], '--device tpu'),
    (['fit', '--bogus'], 'unrecognized arguments: --bogus'),
    ([], 'the following arguments are required: COMMAND'),
])
def test_bad_arguments(args, msg, capsys):
    with pytest.raises(SystemExit) as e: main(args)
    assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_cuda_requested_without_cuda(capsys):
    with pytest.raises(SystemExit) as e: main(['fit', '--device', 'cuda'])
    assert e.value.code == 2 and 'CUDA is not available' in capsys.readouterr().err


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path/'f').write_text('')
    with pytest.raises(SystemExit): main(['fit', '--out', str(tmp_path/'f')])
    assert 'is not a directory' in capsys.readouterr().err


def test_bad_arguments_exit_nonzero_in_a_subprocess():
    r = run('fit', '--epochs', '0')
    assert r.returncode == 2 and 'must be a positive number' in r.stderr and r.stdout == ''


def test_importing_sets_no_environment():
    "OMP_WAIT_POLICY must be set before torch loads, so no module sets it: `make demo` does, for the main job."
    code = 'import os, fastfound.cli, fastfound.models; print(os.environ.get("OMP_WAIT_POLICY"))'
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env).stdout.strip() == 'None'
    make = (Path(__file__).resolve().parent.parent/'Makefile').read_text()
    assert 'OMP_WAIT_POLICY=PASSIVE $(BIN)/fastfound fit' in make
