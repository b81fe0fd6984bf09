"`fastfound fit` as a user runs it: subprocesses on the bundled sample, and every bad input it must refuse."
import csv, os, shutil, subprocess, sys
from pathlib import Path

import pytest, torch

from fastfound.checkpoint import load_learner
from fastfound.cli import describe, main, parser, precision, recipe, reuse_memory
from fastfound.training import native_bf16
from fastfound.data import FMNIST_FILES, SAMPLE_PATH
from fastfound.models import CNN_WIDTH, cnn, mlp

EXE = Path(sys.executable).parent/'fastfound'


def run(*args, env=None, **kw):
    exe = [str(EXE)] if EXE.exists() else [sys.executable, '-c',
                                           'import sys; from fastfound.cli import main; sys.exit(main())']
    env = {**os.environ, 'MPLBACKEND': 'Agg', **(env or {})}
    return subprocess.run(exe + list(args), capture_output=True, text=True, env=env, timeout=600, **kw)


def test_fit_one_epoch_on_the_sample(tmp_path):
    out = tmp_path/'run'
    r = run('fit', '--epochs', '1', '--data', str(SAMPLE_PATH), '--device', 'cpu', '--out', str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith('epoch'))
    dtype = 'bfloat16' if native_bf16() else 'float32'         # autocast where the CPU has bfloat16 instructions
    assert lines[head - 1].startswith(f'recipe: cnn 24-48-96-192, 1 epoch, lr 0.01, bs 256, {dtype}')  # before
    assert lines[head].split() == ['epoch', 'train_loss', 'train_accuracy', 'time']  # no hold-out: no valid
    assert lines[head + 1].split()[0] == '0'
    acc = float(next(l for l in lines if l.startswith('test accuracy:')).split()[2])
    assert 0.5 < acc <= 1                                      # one epoch on 5,000 images: well above chance (0.1)
    assert lines[-1].startswith('training: ') and 'whole run: ' in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ['confusion.png', 'history.csv', 'loss.png', 'model.pth']
    assert (out/'loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (out/'model.pth').stat().st_mode & 0o777 == (out/'history.csv').stat().st_mode & 0o777
    learn = load_learner(out/'model.pth', cnn)                # the default width loads into the default CNN
    assert learn.meta['model'] == 'cnn' and learn.meta['width'] == CNN_WIDTH
    assert learn.meta['shape'] == (1, 28, 28)                  # so predict_one reshapes a raw 28x28 image
    assert '\r' not in r.stdout                                # not a terminal: no progress bars


def test_valid_pct_and_a_fresh_history(tmp_path):
    args = ('fit', '--epochs', '1', '--width', '8', '--valid-pct', '0.2', '--data', str(SAMPLE_PATH),
            '--out', str(tmp_path))
    for _ in range(2): r = run(*args)                          # twice into the same folder
    assert r.returncode == 0, r.stderr
    assert '4,000 training images, 1,000 held out for validation, 1,000 test images' in r.stdout
    valid = float(next(l for l in r.stdout.splitlines() if l.startswith('validation accuracy:')).split()[2])
    rows = list(csv.DictReader((tmp_path/'history.csv').open()))
    assert len(rows) == 1                                      # the second run's history only
    assert 0.3 < float(rows[0]['valid_accuracy']) <= 1 and 0.3 < valid <= 1
    assert load_learner(tmp_path/'model.pth', lambda: cnn(8)).meta['width'] == 8


def test_fit_mlp(tmp_path):
    r = run('fit', '--model', 'mlp', '--epochs', '1', '--bs', '128', '--lr', '0.003', '--data', str(SAMPLE_PATH),
            '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr
    dtype = 'bfloat16' if native_bf16() else 'float32'
    assert f'recipe: mlp, 1 epoch, lr 0.003, bs 128, {dtype}; AdamW' in r.stdout   # no augmentation, no TTA
    meta = load_learner(tmp_path/'model.pth', mlp).meta
    assert meta['model'] == 'mlp' and meta['shape'] == (784,)


def test_diverged_run_exits_1_and_saves_nothing(tmp_path):
    (tmp_path/'model.pth').write_bytes(b'an old model')
    r = run('fit', '--model', 'mlp', '--lr', '1e10', '--epochs', '2', '--data', str(SAMPLE_PATH), '--out', str(tmp_path))
    assert r.returncode == 1, (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and 'diverged' in err[0] and 'Traceback' not in r.stderr
    assert not (tmp_path/'model.pth').exists() and 'test accuracy' not in r.stdout


@pytest.mark.parametrize('args, msg', [
    (['fit', '--epochs', '0'], '--epochs: must be a positive number'),
    (['fit', '--epochs', 'two'], '--epochs: not a number'),
    (['fit', '--bs', '-1'], '--bs: must be a positive number'),
    (['fit', '--bs', str(10**25)], '--bs: must be a positive number up to 60000'),
    (['fit', '--seed', str(2**70)], '--seed: must be a number from 0 up to'),
    (['fit', '--lr', 'nan'], '--lr: must be a positive number'),
    (['fit', '--lr', '-0.1'], '--lr: must be a positive number'),
    (['fit', '--valid-pct', '0.9'], '--valid-pct: must be a number from 0 up to 0.5'),
    (['fit', '--model', 'resnet'], "invalid choice: 'resnet'"),
    (['fit', '--data', '/nowhere'], '--data /nowhere: missing train-images-idx3-ubyte.gz'),
    (['fit', '--device', 'tpu'], '--device tpu'),
    (['fit', '--device', 'meta'], '--device meta: fastfound fit runs on cpu or cuda'),
    (['fit', '--device', 'mps'], '--device mps: fastfound fit runs on cpu or cuda'),
    (['fit', '--device', 'xpu'], '--device xpu: fastfound fit runs on cpu or cuda'),
    (['fit', '--out', '/etc/passwd'], '--out /etc/passwd: exists and is not a directory'),
    (['fit', '--out', '/etc/passwd/sub'], '--out /etc/passwd/sub: cannot write there: Not a directory'),
    (['fit', '--out', '/sys/x'], '--out /sys/x: cannot write there'),
    (['fit', '--bogus'], 'unrecognized arguments: --bogus'),
])
def test_bad_arguments(args, msg, capsys):
    with pytest.raises(SystemExit) as e: main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err
    assert err.startswith('usage: fastfound fit') and err.strip().splitlines()[-1].startswith('fastfound fit: error:')


def test_no_command(capsys):
    with pytest.raises(SystemExit) as e: main([])
    assert e.value.code == 2 and 'the following arguments are required: COMMAND' in capsys.readouterr().err


def test_out_below_a_file(tmp_path, capsys):
    (tmp_path/'f').write_text('')
    with pytest.raises(SystemExit) as e: main(['fit', '--out', str(tmp_path/'f'/'sub')])
    assert e.value.code == 2 and 'cannot write there: Not a directory' in capsys.readouterr().err


def test_out_read_only(tmp_path, capsys):
    d = tmp_path/'ro'
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK): pytest.skip('this user (root?) can write into a read-only folder')
        with pytest.raises(SystemExit) as e: main(['fit', '--out', str(d/'run')])
        assert e.value.code == 2 and 'cannot write there: Permission denied' in capsys.readouterr().err
    finally: d.chmod(0o700)


def _broken(tmp_path, how):
    "A copy of the sample with its training images corrupted or truncated."
    d = tmp_path/how
    shutil.copytree(SAMPLE_PATH, d)
    f = d/'train-images-idx3-ubyte.gz'
    raw = f.read_bytes()
    f.write_bytes(raw[:len(raw)//2] if how == 'truncated' else raw[:20] + b'\xff'*200 + raw[220:])
    return d


@pytest.mark.parametrize('how', ['truncated', 'corrupt'])
def test_broken_data(tmp_path, how, capsys):
    d = _broken(tmp_path, how)
    with pytest.raises(SystemExit) as e: main(['fit', '--data', str(d), '--out', str(tmp_path/'out')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('usage: fastfound fit')
    assert err.strip().splitlines()[-1].startswith(f'fastfound fit: error: cannot load Fashion-MNIST from {d}')


def test_broken_fastfound_data_in_a_subprocess(tmp_path):
    r = run('fit', '--out', str(tmp_path/'out'), env={'FASTFOUND_DATA': str(_broken(tmp_path, 'truncated'))})
    assert r.returncode == 2 and 'Traceback' not in r.stderr and r.stdout == ''
    assert '($FASTFOUND_DATA)' in r.stderr.strip().splitlines()[-1]


def test_bad_arguments_exit_nonzero_in_a_subprocess():
    r = run('fit', '--epochs', '0')
    assert r.returncode == 2 and 'must be a positive number' in r.stderr and r.stdout == ''


def test_help_is_fit_s():
    r = run('fit', '--help')
    assert r.returncode == 0 and r.stdout.startswith('usage: fastfound fit')
    for opt in ('--valid-pct', '--augment, --no-augment', '--tta, --no-tta', '--precision', '--device'):
        assert opt in r.stdout


def _args(*a): return parser().parse_args(['fit', *a])


def test_precision_and_device_selection(monkeypatch):
    "bfloat16 autocast on CUDA and on CPUs with bfloat16 instructions; float32 on other CPUs."
    assert precision(torch.device('cuda'), 'auto') == torch.bfloat16
    assert precision(torch.device('cuda:1')) == torch.bfloat16
    for avx, amx, want in ((False, False, torch.float32), (True, False, torch.bfloat16),
                           (False, True, torch.bfloat16)):
        monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx)
        monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx)
        assert precision(torch.device('cpu'), 'auto') == want
    monkeypatch.delattr(torch.cpu, '_is_avx512_bf16_supported')    # a torch without the probes
    monkeypatch.delattr(torch.cpu, '_is_amx_tile_supported')
    assert precision(torch.device('cpu')) == torch.float32
    assert precision(torch.device('cpu'), 'bfloat16') == torch.bfloat16
    assert precision(torch.device('cuda'), 'float32') == torch.float32
    a = _args('--device', 'cpu')
    a.device = torch.device('cuda')                           # as `_check` would set it on a CUDA machine
    r = recipe(a)
    assert r['dtype'] == torch.bfloat16 and r['channels_last'] and r['augment'] and r['tta']
    assert 'bfloat16, channels-last' in describe(r)
    a = _args('--model', 'mlp', '--compile')
    a.device = torch.device('cpu')
    r = recipe(a)
    assert (r['epochs'], r['lr'], r['dtype'], r['augment'], r['compile']) == (5, 3e-3, torch.float32, False, True)
    assert r['width'] is None and not r['tta']


def test_reuse_memory():
    "glibc has `mallopt`; elsewhere the call is a no-op that says so."
    import platform
    assert reuse_memory() == (sys.platform == 'linux' and platform.libc_ver()[0] == 'glibc')


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_cuda_requested_without_cuda(capsys):
    with pytest.raises(SystemExit) as e: main(['fit', '--device', 'cuda'])
    assert e.value.code == 2 and 'CUDA is not available' in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fit_on_cuda(tmp_path):
    r = run('fit', '--epochs', '1', '--device', 'cuda', '--data', str(SAMPLE_PATH), '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert 'bfloat16, channels-last' in r.stdout and 'device: cuda' in r.stdout
    assert 0.5 < float(next(l for l in r.stdout.splitlines() if l.startswith('test accuracy:')).split()[2]) <= 1


def test_importing_sets_no_environment():
    "OMP_WAIT_POLICY must be set before torch loads, so no module sets it: `make demo` does, for the main job."
    code = 'import os, fastfound.cli, fastfound.models; print(os.environ.get("OMP_WAIT_POLICY"))'
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env).stdout.strip() == 'None'
    make = (Path(__file__).resolve().parent.parent/'Makefile').read_text()
    assert 'OMP_WAIT_POLICY=PASSIVE $(BIN)/fastfound fit' in make


def test_ema_option():
    "--ema DECAY adds EMA to the recipe; 0 (the default) leaves it out; a decay of 1 or more is refused."
    a = _args('--device', 'cpu', '--ema', '0.999')
    a.device = torch.device('cpu')
    r = recipe(a)
    assert r['ema'] == 0.999 and describe(r).endswith('EMA 0.999; AdamW, one cycle')
    a = _args('--device', 'cpu')
    a.device = torch.device('cpu')
    assert recipe(a)['ema'] == 0 and 'EMA' not in describe(recipe(a))
    with pytest.raises(SystemExit) as e: _args('--ema', '1')
    assert e.value.code == 2
