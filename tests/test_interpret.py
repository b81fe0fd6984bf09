"The numbers behind each picture: the confusion matrix, top losses, most confused pairs, the titles drawn."
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn
from fastfound.data import DataLoaders, TensorLoader
from fastfound.learner import Learner
from fastfound.interpret import ClassificationInterpretation, show_images, label_name

NAMES = ('ant', 'bee', 'cat', 'dog')

@pytest.fixture(autouse=True)
def close_figs():
    yield
    plt.close('all')

def learner(n=150, bs=32, vocab=NAMES, seed=0):
    "A linear classifier on 4x4 'images' of 4 classes, trained a little so that it is right and wrong."
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)
    x[torch.arange(n), 0, y, y] += 1.5  # some signal
    dls = DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True, device='cpu'),
                      TensorLoader(x, y, bs=bs, device='cpu'))
    if vocab is not None: dls.vocab = vocab
    torch.manual_seed(seed)
    learn = Learner(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), dls, lr=0.3, default_cbs=False)
    learn.fit(1)
    return learn, x, y

def direct_count(targs, preds, n):
    cm = torch.zeros(n, n, dtype=torch.long)
    for t, p in zip(targs.tolist(), preds.tolist()): cm[t, p] += 1
    return cm

def test_from_learner_matches_get_preds_and_the_data():
    learn, x, y = learner()
    interp = ClassificationInterpretation.from_learner(learn)
    preds, targs, losses = learn.get_preds(with_loss=True)
    assert torch.equal(interp.preds, preds) and torch.equal(interp.targs, targs)
    assert torch.equal(interp.losses, losses) and torch.equal(interp.inputs, x)
    assert torch.allclose(losses, F.cross_entropy(preds, y, reduction='none'))

def test_confusion_matrix_is_a_direct_count():
    learn, x, y = learner()
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    assert cm.dtype == torch.long and cm.shape == (4, 4)
    assert torch.equal(cm, direct_count(y, interp.preds.argmax(1), 4))
    assert 0 < cm.trace() < len(y), 'the model should be partly right for this test to mean something'

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=60))
def test_confusion_matrix_and_most_confused_property(n, pairs):
    pairs = [(t % n, p % n) for t, p in pairs]
    targs = torch.tensor([t for t, _ in pairs])
    preds = F.one_hot(torch.tensor([p for _, p in pairs]), n).float()
    interp = ClassificationInterpretation(None, preds, targs, torch.zeros(len(pairs)))
    cm = interp.confusion_matrix()
    assert torch.equal(cm, direct_count(targs, preds.argmax(1), n))
    for min_val in (1, 2, 3):
        mc = interp.most_confused(min_val)
        want = {(str(t), str(p)): c for (t, p), c in
                ((tp, sum(1 for q in pairs if q == tp)) for tp in set(pairs)) if t != p and c >= min_val}
        assert {(a, b): c for a, b, c in mc} == want
        assert [c for *_, c in mc] == sorted((c for *_, c in mc), reverse=True)

def test_top_losses_are_get_preds_losses():
    learn, x, y = learner()
    interp = ClassificationInterpretation.from_learner(learn)
    _, _, losses = learn.get_preds(with_loss=True)
    vals, idx = interp.top_losses(5)
    assert torch.equal(vals, losses.sort(descending=True).values[:5])
    assert torch.equal(losses[idx], vals)
    lo, lidx = interp.top_losses(3, largest=False)
    assert torch.equal(lo, losses.sort().values[:3]) and torch.equal(losses[lidx], lo)
    assert len(interp.top_losses()[0]) == len(y) and len(interp.top_losses(10_000)[0]) == len(y)

def test_plot_top_losses_titles_carry_the_numbers():
    learn, x, y = learner()
    interp = ClassificationInterpretation.from_learner(learn)
    axs = interp.plot_top_losses(6, ncols=3)
    vals, idx = interp.top_losses(6)
    probs = interp.preds.softmax(1)
    assert len(axs) == 6
    for ax, l, i in zip(axs, vals, idx):
        names, nums = ax.get_title().split('\n')
        p = int(interp.preds[i].argmax())
        assert names == f'{NAMES[p]} / {NAMES[int(y[i])]}'
        assert nums == f'{float(l):.2f} / {float(probs[i, p]):.2f}'
        assert (ax.images[0].get_array() == x[i, 0].numpy()).all()  # the item itself is drawn

def test_plot_confusion_matrix_cells():
    learn, *_ = learner()
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    ax = interp.plot_confusion_matrix()
    assert [int(t.get_text()) for t in ax.texts] == cm.flatten().tolist()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    ax = interp.plot_confusion_matrix(normalize=True)
    fr = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    assert [t.get_text() for t in ax.texts] == [f'{v:.2f}' for v in fr.flatten().tolist()]

def test_most_confused_against_the_matrix():
    learn, *_ = learner()
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    mc = interp.most_confused()
    assert all(cm[NAMES.index(a), NAMES.index(p)] == c and a != p for a, p, c in mc)
    assert len(mc) == int(((cm - torch.diag(cm.diag())) >= 1).sum())

def test_show_batch_and_show_results_titles():
    learn, x, y = learner()
    axs = learn.dls.show_batch(b=(x[:5], y[:5]))
    assert [ax.get_title() for ax in axs] == [NAMES[int(t)] for t in y[:5]]
    axs = learn.show_results(max_n=7)
    preds = learn.model(x[:7]).argmax(1)
    assert [ax.get_title().split('\n') for ax in axs] == [[NAMES[int(t)], NAMES[int(p)]]
                                                          for t, p in zip(y[:7], preds)]
    assert [ax.title.get_color() for ax in axs] == ['green' if t == p else 'red' for t, p in zip(y[:7], preds)]

def test_show_batch_leaves_the_rng_alone_and_works_without_names():
    learn, x, y = learner(vocab=None)
    s = torch.random.get_rng_state()
    axs = learn.dls.show_batch(max_n=4)
    assert torch.equal(torch.random.get_rng_state(), s) and len(axs) == 4
    assert all(ax.get_title() in {'0', '1', '2', '3'} for ax in axs)
    assert label_name(2, None) == '2' and label_name(torch.tensor(1), NAMES) == 'bee'

def test_bad_input_clear_errors():
    with pytest.raises(ValueError, match='square number'): show_images([torch.zeros(10)])
    with pytest.raises(ValueError, match='at least one'): show_images([])
    with pytest.raises(ValueError, match='targs has 3 items, preds 2'):
        ClassificationInterpretation(None, torch.zeros(2, 3), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match='needs the inputs'):
        ClassificationInterpretation(None, torch.zeros(2, 3), torch.zeros(2), torch.zeros(2)).plot_top_losses()

def test_vocab_from_the_loaders():
    learn, x, y = learner(vocab=None)
    learn.dls.train.vocab = NAMES                          # a loader that carries its class names
    assert [ax.get_title() for ax in learn.dls.show_batch(b=(x[:3], y[:3]))] == [NAMES[int(t)] for t in y[:3]]
    assert ClassificationInterpretation.from_learner(learn).vocab == NAMES
    assert ClassificationInterpretation.from_learner(learn, vocab=list('abcd')).most_confused()[0][0] in 'abcd'
