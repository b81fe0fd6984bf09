"""Sharded training (issue 22): FSDP2's `fully_shard` per block on 2 gloo ranks, through `distrib_ctx(shard=True)`.
Each job runs under a hard timeout (see test_distributed.py)."""
import sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _dist_job import build  # noqa: E402
from test_distributed import run, same_weights  # noqa: E402


def test_sharded_fit_as_one_process_then_one_plain_export(tmp_path):
    r0, r1 = run('shard', tmp_path, '--timeout', '60')
    one = build(momentum=0.9)
    one.fit(2)
    same_weights(r0, r1, 'weights', one)  # the same on both ranks, and as one process to float rounding
    assert r0['stats'] == r1['stats']
    for a, b in zip(r0['stats'], one.recorder.values):
        for k in ('train_loss', 'valid_loss', 'valid_accuracy'):
            assert abs(a[k] - b[k]) < 1e-5, (k, a[k], b[k])
    assert r0['type'] == r1['type'] == 'Sequential'  # after the fit: the plain module, full weights
    from fastfound.checkpoint import load_learner
    learn = load_learner(tmp_path/'model.pth', build().model)  # one ordinary file, in one process
    for k, v in learn.model.state_dict().items(): assert torch.equal(v, r0['weights'][k]), k
    assert 'cannot write or resume a Checkpoint' in r0['ck'] and r0['ck'] == r1['ck']
