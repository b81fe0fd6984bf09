"Checkpoint files: atomic writes, safe loading of hostile and broken files, RNG capture."
import os, pickle, random, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from fastfound.checkpoint import CheckpointError, atomic_save, load_file, rng_states, set_rng_states
import fastfound.checkpoint as ckpt


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
    def fail(tmp, dest):
        assert tmp.parent == dest.parent and tmp.exists() and tmp.stat().st_size > 0
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt, 'before_replace', fail)
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
