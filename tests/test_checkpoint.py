"Checkpoint files: atomic writes, safe loading of hostile and broken files, RNG capture."
import copy, os, pickle, random, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from fastfound.files import CheckpointError, atomic_save, load_file
from fastfound.state import rng_states, set_rng_states


class Evil:
    "Unpickling this runs a shell command that creates `marker`."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


@pytest.fixture
def evil_files(tmp_path):
    "A malicious file in torch's zip format and one as a bare pickle, plus the marker their payload would create."
    marker = tmp_path/'pwned'
    torch.save({'format': 'fastfound', 'model': {'w': torch.ones(2)}, 'x': Evil(marker)}, tmp_path/'evil_zip.pt')
    with open(tmp_path/'evil_pickle.pt', 'wb') as f: pickle.dump({'x': Evil(marker)}, f)
    return marker, [tmp_path/'evil_zip.pt', tmp_path/'evil_pickle.pt']


def test_evil_files_are_really_malicious(evil_files):
    "The control: an unsafe load of each file does run the payload (in a child process, so the test stays clean)."
    marker, files = evil_files
    for fn in files:
        code = f"import torch; torch.load({str(fn)!r}, weights_only=False)"
        subprocess.run([sys.executable, '-c', code], capture_output=True)
        assert marker.exists(), f'{fn.name}: the payload did not run under an unsafe load'
        marker.unlink()


def test_evil_files_refused(evil_files):
    marker, files = evil_files
    for fn in files:
        with pytest.raises(CheckpointError, match='refused to load') as e: load_file(fn)
        assert str(fn) in str(e.value)
        assert not marker.exists()


def test_bad_files(tmp_path):
    good = atomic_save({'w': torch.randn(100)}, tmp_path/'good.pt')
    data = good.read_bytes()
    cases = {'cut.pt': data[:len(data)//2], 'cut_tail.pt': data[:-10], 'empty.pt': b'',
             'notes.txt': b'hello\n', 'random.bin': bytes(range(256))*4}
    for name, b in cases.items(): (tmp_path/name).write_bytes(b)
    for name, why in [('cut.pt', 'truncated or corrupted'), ('cut_tail.pt', 'truncated or corrupted'),
                      ('empty.pt', 'empty'), ('notes.txt', 'not a file written by torch.save'),
                      ('random.bin', 'not a file written by torch.save')]:
        with pytest.raises(CheckpointError, match=why) as e: load_file(tmp_path/name)
        assert str(tmp_path/name) in str(e.value)
        assert e.value.__cause__ is None and e.value.__suppress_context__  # no torch traceback chained on
    with pytest.raises(FileNotFoundError, match='no checkpoint at'): load_file(tmp_path/'nope.pt')


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = atomic_save({'v': torch.tensor(1)}, tmp_path/'sub'/'c.pt')
    def fail(tmp, dest):  # the data is on disk, the rename has not happened
        tmp, dest = Path(tmp), Path(dest)
        assert tmp.parent == dest.parent and tmp.exists() and tmp.stat().st_size > 0
        raise KeyboardInterrupt
    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(KeyboardInterrupt): atomic_save({'v': torch.tensor(2)}, p)
    assert load_file(p)['v'] == 1
    assert [f.name for f in p.parent.iterdir()] == ['c.pt']


def test_atomic_save_mode(tmp_path):
    p = atomic_save({'v': 1}, tmp_path/'m.pt')
    q = tmp_path/'plain.pt'; torch.save({'v': 1}, q)
    assert p.stat().st_mode == q.stat().st_mode  # not mkstemp's private 0600


def test_rng_round_trip(tmp_path):
    torch.manual_seed(3); random.seed(3); np.random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    atomic_save(rng_states(), tmp_path/'rng.pt')
    draw = lambda: (torch.randn(5).tolist(), torch.randperm(10).tolist(), random.random(), np.random.randn(), np.random.rand(3).tolist())
    a = draw()
    set_rng_states(load_file(tmp_path/'rng.pt'))
    assert draw() == a


# --- through the Learner --------------------------------------------------------------------------------------
from functools import partial
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from fastfound.callbacks import EarlyStopping
from fastfound.checkpoint import Checkpoint, load_learner
from fastfound.data import DataLoaders
from fastfound.learner import Callback, Learner


def small_learner(seed=0, loaders='tensor', cbs=None):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    if loaders == 'tensor': dls = DataLoaders.from_tensors(x, y, x[:60], y[:60], bs=30, device='cpu')
    else:  # torch's DataLoader shuffling with its own generator
        dls = DataLoaders(DataLoader(TensorDataset(x, y), batch_size=30, shuffle=True, generator=torch.Generator().manual_seed(1)),
                          DataLoader(TensorDataset(x[:60], y[:60]), batch_size=60))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    return Learner(model, dls, lr=0.1, opt_func=partial(torch.optim.SGD, momentum=0.9), cbs=cbs)

class Crash(Callback):
    def before_batch(self):
        if self.training and (self.epoch, self.iter) == (2, 4): raise RuntimeError('crash')

def weights(learn): return [p.detach().clone() for p in learn.model.state_dict().values()]


@pytest.mark.parametrize('loaders', ['tensor', 'torch'])
def test_resume_is_exact(tmp_path, loaders):
    "Crash in epoch 2, resume in a learner built with other seeds: same weights as a run never interrupted."
    a = small_learner(loaders=loaders, cbs=Checkpoint(tmp_path/'a')); a.fit(4)
    b = small_learner(loaders=loaders, cbs=Checkpoint(tmp_path/'b'))
    with pytest.raises(RuntimeError): b.fit(4, cbs=Crash())
    torch.manual_seed(99)
    if loaders == 'torch': b.dls.train.generator.manual_seed(99)  # a new process would not have the old generator
    b = small_learner(seed=5, loaders=loaders, cbs=Checkpoint(tmp_path/'b'))
    if loaders == 'torch': b.dls.train.generator.manual_seed(99)
    b.fit(4, resume=True)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert a.recorder.losses == b.recorder.losses


def test_evil_file_refused_everywhere(evil_files):
    marker, files = evil_files
    for fn in files:
        for load in (lambda: small_learner().load(fn), lambda: small_learner().fit(1, resume=fn),
                     lambda: load_learner(fn, nn.Linear(8, 3))):
            with pytest.raises(CheckpointError, match='refused to load'): load()
    assert not marker.exists()


def test_callback_state_must_be_plain(tmp_path):
    class NumpyState(Callback):
        def state_dict(self): return {'best': np.float64(0.5)}
    learn = small_learner(cbs=[NumpyState(), Checkpoint(tmp_path/'c')])
    with pytest.raises(TypeError, match=r"callback NumpyState's state_dict\(\)\['best'\] is a numpy.float64"): learn.fit(1)


def test_callback_state_mismatch_warns(tmp_path):
    small_learner(cbs=[EarlyStopping(), Checkpoint(tmp_path/'c')]).fit(1)
    with pytest.warns(UserWarning, match='lacks, ignored: EarlyStopping'):
        small_learner(cbs=Checkpoint(tmp_path/'c')).fit(2, resume=True)
    small_learner(cbs=Checkpoint(tmp_path/'d')).fit(1)
    with pytest.warns(UserWarning, match='no state for callback EarlyStopping'):
        small_learner(cbs=[EarlyStopping(), Checkpoint(tmp_path/'e')]).fit(2, resume=tmp_path/'d'/'last.pt')


def test_save_load_round_trip(tmp_path):
    a = small_learner(); a.fit(2)
    a.save(tmp_path/'w.pt')
    b = small_learner(seed=3).load(tmp_path/'w.pt')
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    torch.manual_seed(7); a.fit(1)
    torch.manual_seed(7); b.fit(1)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))  # momentum came back too
    c = small_learner(seed=4).load(tmp_path/'w.pt', with_opt=False)
    assert c.opt is None


def test_newer_format_refused(tmp_path):
    atomic_save(dict(format='fastfound', version=99, kind='weights', model={}), tmp_path/'new.pt')
    with pytest.raises(CheckpointError, match='newer than this fastfound reads'): small_learner().load(tmp_path/'new.pt')


def _sharded_run(tmp_path):
    "A one-process learner whose Checkpoint wrote a sharded-style record: `last.pt` and a DCP folder beside it."
    from torch import nn
    from fastfound.data import DataLoaders, TensorLoader
    from fastfound.learner import Learner
    from fastfound.files import digest
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    learn = Learner(nn.Linear(4, 2), DataLoaders(TensorLoader(x, y, 16), TensorLoader(x, y, 32)), default_cbs=False)
    learn.fit(1)
    rec = learn.state_dict(shards=tmp_path/'shards-0-x')  # what Checkpoint writes for a sharded model
    atomic_save(rec, tmp_path/'last.pt')
    def forge(name, data):  # an attacker who can write the folder can rewrite the record's digests too
        (tmp_path/'shards-0-x'/name).write_bytes(data)
        rec['shards']['files'][name] = digest(tmp_path/'shards-0-x'/name)
        atomic_save(rec, tmp_path/'last.pt')
    return learn, forge


def test_evil_sharded_checkpoint_index_refused(tmp_path):
    "DCP reads its index with pickle.load: a forged `.metadata` would run; fastfound's reader refuses it."
    learn, forge = _sharded_run(tmp_path)
    marker = tmp_path/'pwned'
    forge('.metadata', pickle.dumps(Evil(marker)))
    code = ('from torch.distributed.checkpoint import FileSystemReader; '
            f'FileSystemReader({str(tmp_path/"shards-0-x")!r}).read_metadata()')
    subprocess.run([sys.executable, '-c', code], capture_output=True)  # the control: DCP's own reader runs it
    assert marker.exists()
    marker.unlink()
    w = learn.model.weight.detach().clone()
    with pytest.raises(CheckpointError, match='which no checkpoint index holds'):
        learn.fit(2, resume=tmp_path/'last.pt')
    assert not marker.exists() and torch.equal(learn.model.weight, w)


def test_sharded_index_with_bytes_or_other_files_refused(tmp_path):
    "An index entry of bytes would make DCP call torch.load(weights_only=False); one of another file read it."
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, ChunkStorageMetadata
    from fastfound.shards import read_index
    learn, forge = _sharded_run(tmp_path)
    good = read_index(tmp_path/'shards-0-x')
    md = copy.deepcopy(good)
    md.state_dict_metadata['model.weight'] = BytesStorageMetadata()
    forge('.metadata', pickle.dumps(md))
    with pytest.raises(CheckpointError, match='BytesStorageMetadata, which no checkpoint index holds'):
        learn.fit(2, resume=tmp_path/'last.pt')
    md.state_dict_metadata['model.weight'] = ChunkStorageMetadata(torch.Size([0]), torch.Size([2]))  # no tensor
    forge('.metadata', pickle.dumps(md))
    with pytest.raises(CheckpointError, match='not an index of tensors'): learn.fit(2, resume=tmp_path/'last.pt')
    md = copy.deepcopy(good)
    for k, v in md.storage_data.items(): v.relative_path = '../../etc/passwd'  # read outside the folder
    forge('.metadata', pickle.dumps(md))
    with pytest.raises(CheckpointError, match=r'names files its record does not list \(../../etc/passwd\)'):
        learn.fit(2, resume=tmp_path/'last.pt')
