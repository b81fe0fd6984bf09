"""Issue 15, "Nothing lost, whatever happens": one test per failure the adversarial run found (numbered as there),
each on a tiny model so the whole file runs in seconds."""
import csv, errno, gzip, os, re, signal, struct, subprocess, sys, textwrap, threading
from pathlib import Path
import pytest, torch
from torch import nn
from fastfound.callbacks import CSVLogger, EarlyStopping
from fastfound.checkpoint import Checkpoint
from fastfound.data import DataLoaders
from fastfound.events import Callback
from fastfound.files import CheckpointError, atomic_save, load_file, read_checkpoint, temp_name
from fastfound.hooks import ActivationStats, n_hooks
from fastfound.learner import Learner
from fastfound.training import GradClip


def tiny(n=72, bs=8, opt_func=torch.optim.SGD, **kw):
    "A 10-16-3 MLP on `n` random points: 9 batches an epoch."
    torch.manual_seed(0)
    x, y = torch.randn(n, 10), torch.randint(0, 3, (n,))
    dls = DataLoaders.from_tensors(x, y, x[:16], y[:16], bs=bs, device='cpu')
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    return Learner(model, dls, lr=0.1, opt_func=opt_func, **kw)

def names(learn): return [type(c).__name__ for c in learn.cbs]
def n_opt_hooks(opt): return len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)  # noqa: SLF001


# 1. lr_find overwrites the Checkpoint's last.pt; on an unfitted learner it fails
def test_1_lr_find_leaves_checkpoint_alone(tmp_path):
    learn = tiny(cbs=[Checkpoint(tmp_path/'ck'), EarlyStopping(patience=5), CSVLogger(tmp_path/'h.csv')])
    learn.fit(2)
    files = {p: p.read_bytes() for p in (tmp_path/'ck'/'last.pt', tmp_path/'ck'/'best.pt', tmp_path/'h.csv')}
    learn.lr_find(num_it=30, show_plot=False)
    for p, b in files.items(): assert p.read_bytes() == b, f'lr_find changed {p.name}'
    assert sorted(os.listdir(tmp_path/'ck')) == ['best.pt', 'last.pt']
    learn.fit(4, resume=True)
    assert [v['epoch'] for v in learn.recorder.values] == [0, 1, 2, 3]

def test_1_lr_find_on_an_unfitted_learner(tmp_path):
    learn = tiny(cbs=[Checkpoint(tmp_path/'ck'), EarlyStopping()])
    sug = learn.lr_find(num_it=12, show_plot=False)
    assert sug.steep > 0 and not (tmp_path/'ck').exists()


# 2. one failing cleanup stops all the others
class Boom(Callback):
    order = -50  # its cleanup_fit runs before the others'
    def cleanup_fit(self): raise OSError(errno.ENOSPC, 'No space left on device')

def test_2_every_cleanup_runs(tmp_path):
    learn = tiny(cbs=Checkpoint(tmp_path/'ck'))
    learn.fit(2)
    log, clip = CSVLogger(tmp_path/'h.csv'), GradClip()
    with pytest.raises(OSError, match='No space') as e:
        learn.fit(4, resume=True, cbs=[Boom(), ActivationStats(), clip, log])
    assert 'Boom.cleanup_fit' in ''.join(getattr(e.value, '__notes__', [])) + str(e.value)
    assert n_hooks(learn.model) == 0 and n_opt_hooks(learn.opt) == 0
    assert log._fd is None
    assert names(learn) == ['DeviceCB', 'MetricsCB', 'Recorder', 'ProgressCB', 'Checkpoint']
    assert learn.start_epoch == 0
    learn.fit(3)  # a fresh fit runs all three epochs
    assert [v['epoch'] for v in learn.recorder.values] == [0, 1, 2]


# 4. a second run in the same folder deletes the first run's temporary file
def test_4_temps_of_live_runs_are_kept(tmp_path):
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        d = tmp_path/'ck'
        d.mkdir()
        live = d/f'.last.pt.{other.pid}.0123abcd.tmp'
        live.write_bytes(b'half a save')
        dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                              text=True).stdout.strip()
        stale = d/f'.last.pt.{dead}.0123abcd.tmp'
        stale.write_bytes(b'a killed save')
        tiny(cbs=Checkpoint(d)).fit(1)
        assert live.read_bytes() == b'half a save' and not stale.exists()
        assert temp_name(d/'last.pt') != temp_name(d/'last.pt')  # two writers in one process never collide
    finally: other.kill(); other.wait()


# 9. loading a FIFO named like a checkpoint blocks forever
@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='no FIFOs here')
def test_9_fifo_refused_at_once(tmp_path):
    os.mkfifo(tmp_path/'last.pt')
    for f in (load_file, read_checkpoint, tiny().load,
              lambda p: tiny().fit(1, resume=p)):
        with pytest.raises(CheckpointError, match='not a regular file') as e: f(tmp_path/'last.pt')
        assert str(tmp_path/'last.pt') in str(e.value)


# 3. the gzip bombs: read_idx decompressed everything before checking the header, and nothing bounded the count
def _bomb(path:Path, count:int, body:int):
    "A gzipped IDX file whose header claims `count` 28x28 images and whose body inflates to `body` zero bytes."
    import zlib
    head = bytes([0, 0, 8, 3]) + struct.pack('>3I', count, 28, 28)
    c, mib = zlib.compressobj(9, zlib.DEFLATED, -15), 1 << 20
    block = c.compress(bytes(mib)) + c.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every MiB of zeros
    crc = zlib.crc32(head)
    with open(path, 'wb') as f:
        f.write(b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff')  # a gzip header
        f.write(c.compress(head) + c.flush(zlib.Z_FULL_FLUSH))
        for i in range(body // mib):
            f.write(block)
            crc = zlib.crc32(bytes(mib), crc)
        f.write(c.compress(bytes(body % mib)) + c.flush())
        f.write(struct.pack('<2I', zlib.crc32(bytes(body % mib), crc), (len(head) + body) & 0xffffffff))
    return path

PEAK = '''
import resource, sys
from fastfound.data import read_idx
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
try: read_idx(sys.argv[1], 3)
except ValueError as e: print('ERROR', e)
print('PEAK', rss() - before)
'''

@pytest.mark.parametrize('count,body,why', [(20, 1 << 30, 'holds more'),
                                            (200_000, 200_000*784, 'more than max_count=150,000')],
                         ids=['1 GiB body', '200,000 blank images'])
def test_3_bombs_refused_in_bounded_memory(tmp_path, count, body, why):
    fn = _bomb(tmp_path/'train-images-idx3-ubyte.gz', count, body)
    assert fn.stat().st_size < 1.1e6
    out = subprocess.run([sys.executable, '-c', PEAK, str(fn)], capture_output=True, text=True, timeout=120,
                         env=os.environ | {'PYTHONPATH': str(Path(__file__).parents[1])}).stdout
    err, peak = out.splitlines()
    assert err.startswith(f'ERROR {fn}: ') and why in err, out
    assert int(peak.split()[1]) < 200e6, out

def test_3_bounds_are_parameters(tmp_path):
    from fastfound.data import read_idx, write_idx
    write_idx(tmp_path/'x.gz', torch.zeros(30, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match='claims 30 items, more than max_count=29'):
        read_idx(tmp_path/'x.gz', max_count=29)
    with pytest.raises(ValueError, match=r'\(60 bytes\), more than max_bytes=59'):
        read_idx(tmp_path/'x.gz', max_bytes=59)
    assert read_idx(tmp_path/'x.gz', max_count=30).shape == (30, 2)


# 5. the CSV log duplicates rows after a crash and resume; a partial last row survives
class DieAt(Callback):
    "Ctrl-C at the end of epoch `epoch`: after CSVLogger (30) took its row, before Checkpoint (90) saved it."
    order = 50
    def __init__(self, epoch): self.at = epoch
    def after_epoch(self):
        if self.epoch == self.at: raise KeyboardInterrupt

def epochs_logged(p): return [int(r['epoch']) for r in csv.DictReader(open(p, newline=''))]

def test_5_csv_matches_checkpoint_after_resume(tmp_path):
    log = tmp_path/'h.csv'
    learn = tiny(cbs=[Checkpoint(tmp_path/'ck'), CSVLogger(log)])
    with pytest.raises(KeyboardInterrupt): learn.fit(4, cbs=DieAt(2))
    assert epochs_logged(log) == [0, 1]  # row 2 is held back: no checkpoint holds epoch 2
    assert read_checkpoint(tmp_path/'ck'/'last.pt')['epoch'] == 1
    with open(log, 'a', newline='') as f: f.write('3,0.5,0.')  # and a row cut short by a full disk
    tiny(cbs=[Checkpoint(tmp_path/'ck'), CSVLogger(log)]).fit(4, resume=True)
    assert epochs_logged(log) == [0, 1, 2, 3]
    assert log.read_text().count('\n') == 5 and log.read_text().endswith('\n')

def enospc(*a): raise OSError(errno.ENOSPC, 'No space left on device')

def test_5_csv_full_disk_leaves_no_partial_row(tmp_path, monkeypatch):
    log = tmp_path/'h.csv'
    learn = tiny(cbs=CSVLogger(log))
    learn.fit(1)
    before = log.read_bytes()
    monkeypatch.setattr(os, 'fsync', enospc)
    with pytest.raises(OSError, match=f'cannot write {log}: the disk is full'): learn.fit(1)
    monkeypatch.undo()
    assert log.read_bytes() == before


# 6. a corrupted checkpoint loads silently
def test_6_any_flipped_bit_is_refused(tmp_path):
    learn = tiny(cbs=Checkpoint(tmp_path/'ck'))
    learn.fit(1)
    good = (tmp_path/'ck'/'last.pt').read_bytes()
    n, bad = len(good), tmp_path/'bad.pt'
    where = sorted(set(range(0, n, n // 400)) | set(range(n - 90, n)))  # every part, and all of the trailer
    for i in where:
        b = bytearray(good)
        b[i] ^= 1 << (i % 8)
        bad.write_bytes(b)
        with pytest.raises(CheckpointError) as e: read_checkpoint(bad)
        assert str(bad) in str(e.value), i
    b = bytearray(good)
    b[n // 2] ^= 4
    bad.write_bytes(b)
    w = [p.detach().clone() for p in learn.model.parameters()]
    for load in (learn.load, lambda p: learn.fit(2, resume=p)):
        with pytest.raises(CheckpointError, match='checksum does not match'): load(bad)
        assert all(torch.equal(a, p) for a, p in zip(w, learn.model.parameters()))
    assert len(where) > 400


# 7. a full disk gives torch's "unexpected pos 28160 vs 28064", naming no file
import fastfound.files as ff

def failing_open(errnum, after=0):
    "An `open` for fastfound.files whose files raise `errnum` once `after` bytes are written."
    real = open
    class F:
        def __init__(self, f): self.f, self.n = f, 0
        def write(self, b):
            self.n += len(b)
            if self.n > after: raise OSError(errnum, os.strerror(errnum))
            return self.f.write(b)
        def __getattr__(self, k): return getattr(self.f, k)
        def __enter__(self): return self
        def __exit__(self, *a): self.f.close()
    return lambda *a, **k: F(real(*a, **k))

@pytest.mark.parametrize('errnum,why', [(errno.ENOSPC, 'the disk is full'), (errno.EROFS, 'read-only'),
                                        (errno.EACCES, 'permission denied')])
def test_7_disk_errors_name_the_file(tmp_path, monkeypatch, errnum, why):
    learn = tiny(cbs=Checkpoint(tmp_path/'ck'))
    learn.fit(1)
    last = tmp_path/'ck'/'last.pt'
    old = last.read_bytes()
    monkeypatch.setattr(ff, 'open', failing_open(errnum, after=100), raising=False)
    with pytest.raises(OSError) as e: learn.fit(2, resume=True)
    monkeypatch.undo()
    assert e.value.errno == errnum and f'cannot write {tmp_path/"ck"}' in str(e.value) and why in str(e.value)
    assert last.read_bytes() == old and sorted(os.listdir(tmp_path/'ck')) == ['best.pt', 'last.pt']
    learn.save(tmp_path/'w.pt')
    monkeypatch.setattr(ff, 'open', failing_open(errnum), raising=False)
    with pytest.raises(OSError, match=f'cannot write {tmp_path/"w.pt"}: .*{why}'): learn.save(tmp_path/'w.pt')


# 12. an unwritable checkpoint folder is found only after the first epoch
class Count(Callback):
    def __init__(self): self.n = 0
    def before_batch(self): self.n += 1

def test_12_unwritable_folder_found_before_the_first_batch(tmp_path, monkeypatch):
    (tmp_path/'file').write_text('not a folder')
    for cb in (Checkpoint(tmp_path/'file'/'ck'), CSVLogger(tmp_path/'file'/'h.csv')):
        n = Count()
        with pytest.raises(OSError, match=f'cannot write {tmp_path/"file"}'): tiny().fit(1, cbs=[cb, n])
        assert n.n == 0
    monkeypatch.setattr(ff, 'open', failing_open(errno.EROFS), raising=False)
    n = Count()
    with pytest.raises(OSError, match='read-only'): tiny().fit(1, cbs=[Checkpoint(tmp_path/'ck'), n])
    assert n.n == 0 and not list((tmp_path/'ck').iterdir())


# 11. malformed records are not validated, and loading is not atomic
def state(learn):
    return ([p.detach().clone() for p in learn.model.parameters()], repr(learn.opt.state_dict()),
            repr(learn.recorder.state_dict()), learn.start_epoch)

def same(a, b): return all(torch.equal(x, y) for x, y in zip(a[0], b[0])) and a[1:] == b[1:]

def test_11_malformed_records_refused_and_nothing_applied(tmp_path):
    src = tiny(opt_func=lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9))
    src.fit(2)
    good = src.state_dict()
    mom = good['opt']['state'][0]['momentum_buffer']
    def drop(k): return {a: v for a, v in good.items() if a != k}
    cases = {'no rng': (drop('rng'), "no 'rng'"), 'no cbs': (drop('cbs'), "no 'cbs'"),
             'no epoch': (drop('epoch'), "no 'epoch'"), 'str epoch': (good | dict(epoch='1'), "'epoch' is a str"),
             'epoch -5': (good | dict(epoch=-5), 'epoch -5 is out of range'),
             'epoch 9 of 2': (good | dict(epoch=9), 'epoch 9 is out of range'),
             'momentum shape': (good | dict(opt=good['opt'] | dict(state={0: {'momentum_buffer': mom[:3]}})),
                                r'momentum_buffer for parameter 0 is \(3, 10\), the parameter \(16, 10\)'),
             'bad cb state': (good | dict(cbs={'Recorder': {'losses': []}}), "KeyError: 'lrs'"),
             'bad rng': (good | dict(rng=good['rng'] | dict(numpy=(1, 2))), 'could not be applied')}
    for name, (d, why) in cases.items():
        learn = tiny(opt_func=lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9))
        learn.fit(1)
        before, rng = state(learn), torch.get_rng_state()
        with pytest.raises(CheckpointError, match=why): learn.load_state_dict(d)
        assert same(state(learn), before), f'{name}: the learner was changed'
        assert torch.equal(torch.get_rng_state(), rng), name
        atomic_save(d, tmp_path/f'{name}.pt')
        with pytest.raises(CheckpointError, match=why): learn.fit(3, resume=tmp_path/f'{name}.pt')
        assert same(state(learn), before), f'{name}: changed by a resume'

def test_11_sgd_file_into_adam_learner(tmp_path):
    a = tiny()
    a.fit(1)
    a.save(tmp_path/'sgd.pt')
    for fitted in (False, True):
        b = tiny(opt_func=torch.optim.Adam)
        if fitted: b.fit(1)
        w, opt = [p.detach().clone() for p in b.model.parameters()], b.opt
        osd = None if opt is None else repr(opt.state_dict())
        with pytest.raises(CheckpointError, match='a SGD optimizer; this learner uses Adam'): b.load(tmp_path/'sgd.pt')
        assert all(torch.equal(x, p) for x, p in zip(w, b.model.parameters()))
        assert b.opt is opt and (opt is None or repr(opt.state_dict()) == osd)


# 13. a second run in a busy folder writes beside the first
HOLDER = textwrap.dedent('''
    import sys, torch
    from torch import nn
    from fastfound.checkpoint import Checkpoint
    from fastfound.data import DataLoaders
    from fastfound.events import Callback
    from fastfound.learner import Learner
    class Wait(Callback):
        order = 95  # after Checkpoint
        def after_epoch(self):
            if self.epoch == 0:  # last.pt of epoch 0 is on disk: say so, and wait to be killed
                print('saved', flush=True)
                sys.stdin.read()
    x, y = torch.randn(72, 10), torch.randint(0, 3, (72,))
    dls = DataLoaders.from_tensors(x, y, x[:16], y[:16], bs=8, device='cpu')
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    Learner(model, dls, lr=0.1, opt_func=torch.optim.SGD).fit(3, cbs=[Checkpoint(sys.argv[1]), Wait()])
''')

def test_13_busy_folder_refused_until_its_run_is_killed(tmp_path):
    ck = tmp_path/'ck'
    p = subprocess.Popen([sys.executable, '-c', HOLDER, str(ck)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    hang = threading.Timer(120, p.kill)  # a hard timeout: a holder that hangs ends its output
    hang.start()
    try:
        assert 'saved\n' in iter(p.stdout.readline, '')  # (after the progress bar's lines)
        hang.cancel()
        theirs = (ck/'last.pt').read_bytes()
        (tmp_path/'link').symlink_to(ck)  # the same folder by another name is held too
        for cb in (Checkpoint(ck), Checkpoint(tmp_path/'link')):
            n = Count()
            with pytest.raises(OSError, match=re.escape(f'{cb.path} is in use by another run')):
                tiny().fit(3, cbs=[cb, n], resume=True)
            assert n.n == 0 and (ck/'last.pt').read_bytes() == theirs
        p.kill()  # SIGKILL: no cleanup runs, and the system drops the lock
        assert p.wait(timeout=30) == -signal.SIGKILL
        learn = tiny(cbs=[Checkpoint(ck)])
        learn.fit(3, resume=True)  # the killed run's last.pt, continued
        assert read_checkpoint(ck/'last.pt')['epoch'] == 2
    finally:
        hang.cancel()
        p.kill()
        p.wait(timeout=30)
