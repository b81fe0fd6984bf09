"""Sharded training (issue 22): FSDP2's `fully_shard` per block on 2 gloo ranks, through `distrib_ctx(shard=True)`,
and its checkpoints through `torch.distributed.checkpoint`. Each job runs under a hard timeout (see
test_distributed.py)."""
import shutil, sys
from pathlib import Path
import pytest, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _dist_job import build, weights  # noqa: E402
from test_distributed import run, same_weights  # noqa: E402
from fastfound.checkpoint import Checkpoint, load_learner  # noqa: E402
from fastfound.files import CheckpointError, load_file, read_checkpoint  # noqa: E402


@pytest.fixture(scope='module')
def shard(tmp_path_factory):
    out = tmp_path_factory.mktemp('shard')
    return out, run('shard', out, '--timeout', '60')


def test_sharded_fit_as_one_process_then_one_plain_export(shard):
    out, (r0, r1) = shard
    one = build(momentum=0.9)
    one.fit(2)
    same_weights(r0, r1, 'weights', one)  # the same on both ranks, and as one process to float rounding
    assert r0['stats'] == r1['stats']
    for a, b in zip(r0['stats'], one.recorder.values):
        for k in ('train_loss', 'valid_loss', 'valid_accuracy'):
            assert abs(a[k] - b[k]) < 1e-5, (k, a[k], b[k])
    assert r0['type'] == r1['type'] == 'Sequential'  # after the fit: the plain module, full weights
    learn = load_learner(out/'model.pth', build().model)  # one ordinary file, in one process
    for k, v in learn.model.state_dict().items(): assert torch.equal(v, r0['weights'][k]), k


def test_sharded_checkpoint_resumes_on_two_ranks_bit_for_bit(shard):
    out, (r0, r1) = shard
    # after epoch 0: last.pt and best.pt name one folder of the two ranks' files and DCP's index
    folder = [f for f in r0['saved'] if f.startswith('shards-0-')]
    assert len(folder) == 1 and {'last.pt', 'best.pt'} <= set(r0['saved']), r0['saved']
    for r in (r0, r1):  # 1 epoch saved + 1 resumed = 2 epochs without a break
        for k, v in r0['weights'].items(): assert torch.equal(r['resumed'][k], v), k
    d = load_file(out/'ck'/'last.pt')
    assert d['epoch'] == 1 and d['model'] == {} and sorted(d['shards']['files']) == [
        '.metadata', '__0_0.distcp', '__1_0.distcp']
    named = {load_file(out/'ck'/f)['shards']['folder'] for f in ('last.pt', 'best.pt')}
    assert {f for f in r0['left'] if f.startswith('shards-')} == named  # no folder left that none names


def test_load_best_after_a_sharded_fit(shard):
    "`Checkpoint(load_best=True)` on 2 sharded ranks: both end with the best epoch's weights, read from its shards."
    out, (r0, r1) = shard
    assert r0['best_epoch'] == r1['best_epoch'] == 0
    assert any(not torch.equal(r0['part'][k], v) for k, v in r0['weights'].items())  # epoch 1 changed them
    for r in (r0, r1):
        for k, v in r0['part'].items(): assert torch.equal(r['best'][k], v), k  # epoch 0's, bit for bit


def test_sharded_checkpoint_resumes_in_one_process(shard, tmp_path):
    out, (r0, r1) = shard
    shutil.copytree(out/'ck0', tmp_path/'ck')  # epoch 0, saved by 2 ranks (a copy: this fit writes there)
    one = build(momentum=0.9, cbs=[Checkpoint(tmp_path/'ck', save_best=False)])
    one.fit(2, resume=True)  # epoch 1 in one process, from the 2 ranks' shards
    h = one.recorder.values
    no_time = lambda d: {k: v for k, v in d.items() if k != 'time'}
    assert [v['epoch'] for v in h] == [0, 1] and no_time(h[0]) == no_time(r0['stats'][0])  # the saved epoch 0
    for k, v in weights(one).items(): torch.testing.assert_close(v, r0['weights'][k], atol=1e-5, rtol=1e-5)
    for k in ('train_loss', 'valid_loss'): assert abs(h[1][k] - r0['stats'][1][k]) < 1e-5, k


def test_a_changed_or_missing_shard_fails_the_resume_and_changes_nothing(shard, tmp_path):
    out, _ = shard
    shutil.copytree(out/'ck', tmp_path/'ck')
    name = load_file(tmp_path/'ck'/'last.pt')['shards']['folder']
    f = tmp_path/'ck'/name/'__1_0.distcp'
    data = bytearray(f.read_bytes())
    data[len(data)//2] ^= 1
    f.write_bytes(bytes(data))
    learn = build(momentum=0.9, cbs=[Checkpoint(tmp_path/'ck')])
    w0 = weights(learn)
    with pytest.raises(CheckpointError, match='__1_0.distcp changed after it was written'): learn.fit(2, resume=True)
    for k, v in weights(learn).items(): assert torch.equal(v, w0[k]), k
    f.unlink()
    with pytest.raises(CheckpointError, match='__1_0.distcp is missing'): read_checkpoint(tmp_path/'ck'/'last.pt')


def test_a_sharded_record_loads_as_weights_in_one_process(shard):
    "`Learner.load` (what `Checkpoint(load_best=True)` calls) and `load_learner` read the 2 ranks' shards too."
    out, _ = shard
    one = build(momentum=0.9)
    one.fit(1)  # epoch 0 in one process
    a = build(momentum=0.9).load(out/'ck0'/'best.pt', with_opt=False)
    assert a.opt is None  # the weights alone
    b = load_learner(out/'ck0'/'last.pt', build().model)
    for k, v in weights(one).items():
        for m in (a.model, b.model): torch.testing.assert_close(m.state_dict()[k], v, atol=1e-5, rtol=1e-5)
    c = build(momentum=0.9).load(out/'ck0'/'last.pt')  # and the optimizer's state, by parameter
    assert c.opt.state_dict()['param_groups'][0]['momentum'] == 0.9 and len(c.opt.state) == 4
