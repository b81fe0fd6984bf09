"Fashion-MNIST loading: bad files, the search order, downloads over HTTP on 127.0.0.1, the sample, TensorLoader."
import gzip, http.server, os, threading
from functools import partial
from pathlib import Path

import pytest, torch
from hypothesis import given, settings, strategies as st

import fastfound.data as ffd
from fastfound.files import file_mode
from fastfound.data import (FMNIST_FILES, SAMPLE_PATH, DataLoaders, TensorLoader, download, fashion_mnist_path,
                            load_fashion_mnist, read_idx, sha256, write_idx)

DEBIAN = Path('/usr/share/datasets/fashion-mnist')


def write_set(d: Path, n_train=20, n_test=10, **over):
    "Write a small, valid Fashion-MNIST-shaped set of the four files into `d`; `over` replaces a file's bytes."
    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for split, n in (('train', n_train), ('t10k', n_test)):
        write_idx(d/f'{split}-images-idx3-ubyte.gz', torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g))
        write_idx(d/f'{split}-labels-idx1-ubyte.gz', (torch.arange(n) % 10).to(torch.uint8))
    for f, data in over.items(): (d/f).write_bytes(data)
    return d


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    "No $FASTFOUND_DATA, an empty cache under tmp_path, no Debian copy: only what a test puts there exists."
    monkeypatch.delenv('FASTFOUND_DATA', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    monkeypatch.setattr(ffd, 'DEBIAN_PATH', tmp_path/'debian')
    return tmp_path


# --- IDX files ---------------------------------------------------------------------------------------------------
def test_good_set_loads(clean_env):
    d = write_set(clean_env/'d')
    xt, yt, xv, yv = load_fashion_mnist(d)
    assert xt.shape == (20, 28, 28) and xv.shape == (10, 28, 28)
    assert xt.dtype == torch.uint8 and yt.dtype == torch.int64
    assert yt.tolist() == [i % 10 for i in range(20)]


def test_truncated_file_names_the_file(clean_env):
    d = write_set(clean_env/'d')
    f = d/'train-images-idx3-ubyte.gz'
    f.write_bytes(f.read_bytes()[:len(f.read_bytes())//2])
    with pytest.raises(ValueError, match='train-images-idx3-ubyte.gz: truncated or corrupt'): load_fashion_mnist(d)


def test_short_payload_in_valid_gzip(clean_env):
    raw = gzip.decompress((write_set(clean_env/'ok')/'t10k-images-idx3-ubyte.gz').read_bytes())
    d = write_set(clean_env/'d', **{'t10k-images-idx3-ubyte.gz': gzip.compress(raw[:-1])})
    with pytest.raises(ValueError, match=r't10k-images-idx3-ubyte.gz: header says shape \(10, 28, 28\)'): load_fashion_mnist(d)


def test_extra_bytes_are_an_error_too(tmp_path):
    write_idx(tmp_path/'x', torch.zeros(3, dtype=torch.uint8))
    (tmp_path/'x').write_bytes((tmp_path/'x').read_bytes() + b'\x00')
    with pytest.raises(ValueError, match='holds 4 bytes'): read_idx(tmp_path/'x')


@pytest.mark.parametrize('magic', [b'\x00\x00\x0d\x03', b'\x08\x03\x00\x00', b'\x00\x00\x08\x01'])
def test_wrong_magic(clean_env, magic):
    raw = gzip.decompress((write_set(clean_env/'ok')/'train-images-idx3-ubyte.gz').read_bytes())
    d = write_set(clean_env/'d', **{'train-images-idx3-ubyte.gz': gzip.compress(magic + raw[4:])})
    with pytest.raises(ValueError, match='train-images-idx3-ubyte.gz'): load_fashion_mnist(d)


def test_wrong_count(clean_env):
    d = write_set(clean_env/'d')
    write_idx(d/'train-labels-idx1-ubyte.gz', torch.zeros(19, dtype=torch.uint8))
    with pytest.raises(ValueError, match='20 images but 19 labels'): load_fashion_mnist(d)


def test_wrong_image_size_and_label(clean_env):
    d = write_set(clean_env/'d')
    write_idx(d/'t10k-images-idx3-ubyte.gz', torch.zeros(10, 28, 27, dtype=torch.uint8))
    with pytest.raises(ValueError, match='expected 28x28'): load_fashion_mnist(d)
    d = write_set(clean_env/'e')
    write_idx(d/'t10k-labels-idx1-ubyte.gz', torch.full((10,), 10, dtype=torch.uint8))
    with pytest.raises(ValueError, match='label 10 is not a class'): load_fashion_mnist(d)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), gz=st.booleans(), seed=st.integers(0, 2**31))
def test_idx_round_trip(tmp_path_factory, shape, gz, seed):
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    fn = tmp_path_factory.mktemp('idx')/('x.gz' if gz else 'x')
    write_idx(fn, x)
    y = read_idx(fn, ndim=len(shape))
    assert y.shape == x.shape and torch.equal(y, x)


@pytest.mark.skipif(not DEBIAN.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_debian_files():
    for f in FMNIST_FILES: assert sha256(DEBIAN/f) == ffd.FMNIST_SHA256[f], f
    xt, yt, xv, yv = load_fashion_mnist(DEBIAN)
    assert xt.shape == (60000, 28, 28) and xv.shape == (10000, 28, 28)
    assert yt.bincount().tolist() == [6000]*10 and yv.bincount().tolist() == [1000]*10
    assert 0.28 < xt.float().mean()/255 < 0.29


# --- the search order ------------------------------------------------------------------------------------------------
def test_search_order(clean_env, monkeypatch):
    arg, env, cache, deb = (write_set(clean_env/n) for n in ('arg', 'env', 'cache/fastfound/fashion-mnist', 'debian'))
    monkeypatch.setenv('FASTFOUND_DATA', str(env))
    assert fashion_mnist_path(arg, download_ok=False) == arg
    assert fashion_mnist_path(clean_env/'empty', download_ok=False) == env      # an incomplete place is skipped
    monkeypatch.delenv('FASTFOUND_DATA')
    assert fashion_mnist_path(download_ok=False) == cache
    for f in FMNIST_FILES[:2]: (cache/f).unlink()                                # a half-filled cache does not count
    assert fashion_mnist_path(download_ok=False) == deb


def test_sample_fallback_with_notice(clean_env, capsys):
    assert fashion_mnist_path(download_ok=False) == SAMPLE_PATH
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'using the bundled sample' in err


def test_nothing_found_lists_every_place(clean_env, monkeypatch):
    monkeypatch.setenv('FASTFOUND_DATA', str(clean_env/'envdir'))
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist_path(clean_env/'argdir', sample=False, url=(clean_env/'srv').as_uri() + '/')
    msg = str(e.value)
    for p in ('argdir', 'envdir', 'cache', 'debian', 'a download from', 'apt-get install dataset-fashion-mnist'): assert p in msg


def test_sample_is_stratified_and_licensed():
    xt, yt, xv, yv = load_fashion_mnist(SAMPLE_PATH)
    assert yt.bincount().tolist() == [500]*10 and yv.bincount().tolist() == [100]*10
    assert 'MIT' in (SAMPLE_PATH/'LICENSE.txt').read_text() and 'Zalando' in (SAMPLE_PATH/'LICENSE.txt').read_text()
    assert sum((SAMPLE_PATH/f).stat().st_size for f in FMNIST_FILES) < 3e6


# --- downloads, served over HTTP on 127.0.0.1 ---------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    "An HTTP server on 127.0.0.1 serving tmp_path/'srv'; yields its base URL."
    root = tmp_path/'srv'; root.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), partial(Quiet, directory=str(root)))
    httpd.handle_error = lambda *a: None  # a client the test interrupts mid-file: a broken pipe, not news
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/', root
    httpd.shutdown(); httpd.server_close()


def test_download_into_cache(clean_env, server, monkeypatch):
    url, root = server
    write_set(root)
    monkeypatch.setattr(ffd, 'FMNIST_SHA256', {f: sha256(root/f) for f in FMNIST_FILES})
    got = fashion_mnist_path(url=url, sample=False)
    assert got == ffd.cache_dir() and sorted(os.listdir(got)) == sorted(FMNIST_FILES)
    assert load_fashion_mnist(got)[0].shape == (20, 28, 28)
    assert all((got/f).stat().st_mode & 0o777 == file_mode() for f in FMNIST_FILES)   # not mkstemp's 0o600


def test_download_bad_hash_leaves_nothing(clean_env, server):
    url, root = server
    write_set(root)
    dest = clean_env/'dl'/'x.gz'
    with pytest.raises(ValueError, match='SHA-256 mismatch'): download(url + FMNIST_FILES[0], dest, '0'*64, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_interrupted_download_leaves_nothing(clean_env, server, monkeypatch):
    url, root = server
    write_set(root, n_train=2000)
    def boom(r, size=1 << 16):
        yield r.read(size); raise KeyboardInterrupt
    monkeypatch.setattr(ffd, '_chunks', boom)
    dest = clean_env/'dl'/FMNIST_FILES[0]
    with pytest.raises(KeyboardInterrupt): download(url + FMNIST_FILES[0], dest, None, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_server_closing_early_is_not_trusted(clean_env):
    "A server that promises more bytes than it sends: the download fails and no file appears."
    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header('Content-Length', '100000'); self.end_headers()
            self.wfile.write(b'\x1f\x8b' + b'\x00'*1000)
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Short)
    threading.Thread(target=httpd.handle_request, daemon=True).start()
    dest = clean_env/'dl'/'x.gz'
    try:
        with pytest.raises(Exception): download(f'http://127.0.0.1:{httpd.server_address[1]}/x.gz', dest, None, progress=False)
    finally: httpd.server_close()
    assert list(dest.parent.iterdir()) == []


def test_failed_download_falls_back_to_sample(clean_env, server, capsys):
    url, root = server                                   # the server has no files: 404
    assert fashion_mnist_path(url=url) == SAMPLE_PATH
    assert 'bundled sample' in capsys.readouterr().err


# --- TensorLoader --------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(1, 16), st.booleans(), st.booleans())
def test_loader_covers_each_sample_once(n, bs, shuffle, drop_last):
    x = torch.arange(n).float()[:, None]
    dl = TensorLoader(x, torch.arange(n), bs, shuffle=shuffle, drop_last=drop_last, device='cpu')
    batches = list(dl)
    assert len(batches) == len(dl)
    for xb, yb in batches:
        assert len(xb) == len(yb) <= bs and torch.equal(xb[:, 0].long(), yb)
        if drop_last: assert len(xb) == bs
    ys = torch.cat([yb for _, yb in batches]).tolist() if batches else []
    assert len(set(ys)) == len(ys) == (n - n % bs if drop_last else n)
    if not shuffle: assert ys == list(range(len(ys)))


def test_loader_converts_normalises_reshapes():
    x = torch.full((4, 28, 28), 255, dtype=torch.uint8)
    dl = TensorLoader(x, torch.zeros(4), 2, norm=(0.5, 0.25), shape=(1, 28, 28), device='cpu')
    xb, _ = next(iter(dl))
    assert xb.shape == (2, 1, 28, 28) and xb.dtype == torch.float32 and torch.allclose(xb, torch.tensor(2.))


def test_loader_bad_args():
    with pytest.raises(ValueError, match='bs must be at least 1'): TensorLoader(torch.zeros(3), torch.zeros(3), 0)


def test_dataloaders_from_tensors():
    dls = DataLoaders.from_tensors(torch.zeros(10, 2), torch.zeros(10), torch.zeros(6, 2), torch.zeros(6), bs=4, device='cpu',
                                   drop_last=True)
    assert dls.train.shuffle and not dls.valid.shuffle and dls.valid.bs == 8
    assert len(dls.train) == 2 and len(dls.valid) == 1
