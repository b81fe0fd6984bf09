"""The unfold convolution (`fastfound.conv`) against `F.conv2d`, on the shapes of `conv_net()`'s two
convolutions.

For each convolution (batches of 64, float32, one thread): the forward pass alone, `conv2d` against
`F.conv2d`; and forward plus backward, the `Conv` layer's hand-written `bwd` against autograd's
backward of `F.conv2d` (the first convolution sees data, so neither computes its input's gradient).
Then one whole training step of the CNN: hand-written layers and `SGD` against the same network in
`torch.nn` with autograd. A and B run alternately in one process, `ROUNDS` rounds of `CALLS` calls;
the figure is the median of the per-round ratios unfold / F.conv2d. The last table is the memory of
each patch matrix next to its input.

    python bench/conv.py
"""
import statistics, time
import torch
import torch.nn.functional as F
from fastfound.backprop import CrossEntropy, SGD
from fastfound.conv import Conv, as_torch, conv2d, conv_net, unfold_bytes

CALLS, ROUNDS, BS = 10, 21, 64
SHAPES = [('conv 1: 1->16, 5x5, stride 2, 28x28', (BS, 1, 28, 28), (16, 1, 5, 5), False),
          ('conv 2: 16->32, 3x3, stride 2, 14x14', (BS, 16, 14, 14), (32, 16, 3, 3), True)]

def per_call(f):
    t0 = time.perf_counter()
    for _ in range(CALLS): f()
    return (time.perf_counter() - t0) / CALLS

def compare(a, b):
    "Median times of `a` and `b`, and the median of their per-round ratios, alternating the order."
    for f in (a, b): per_call(f)   # warm up
    ta, tb = [], []
    for r in range(ROUNDS):
        pair = (a, ta), (b, tb)
        for f, times in (pair if r % 2 == 0 else pair[::-1]): times.append(per_call(f))
    ratio = statistics.median(x / y for x, y in zip(ta, tb))
    return statistics.median(ta), statistics.median(tb), ratio

def conv_pair(xs, ws, input_grad):
    torch.manual_seed(0)
    x, w, b = torch.randn(xs), torch.randn(ws) * 0.1, torch.randn(ws[0])
    k = ws[-1]
    kw = dict(stride=2, padding=k // 2)
    layer = Conv(w, b, input_grad=input_grad, **kw)
    g = torch.randn_like(layer(x))
    xr = x.clone().requires_grad_(input_grad)
    wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
    def hand_fb():
        out = layer(x)
        out.g = g
        layer.backward()
    def torch_fb():
        F.conv2d(xr, wr, br, **kw).backward(g)
        wr.grad = br.grad = xr.grad = None
    fwd = compare(lambda: conv2d(x, w, b, **kw), lambda: F.conv2d(x, w, b, **kw))
    return fwd, compare(hand_fb, torch_fb), unfold_bytes(x, k, **kw), x.nbytes

def step_pair():
    torch.manual_seed(0)
    net = conv_net()
    twin = as_torch(net)
    x, y = torch.randn(BS, 1, 28, 28), torch.randint(0, 10, (BS,))
    loss_fn, opt = CrossEntropy(), SGD(net.parameters(), 1e-3)
    def hand():
        loss_fn(net(x), y)
        loss_fn.backward()
        net.backward()
        opt.step()
    def auto():
        F.cross_entropy(twin(x), y).backward()
        with torch.no_grad():
            for p in twin.parameters():
                p.sub_(p.grad, alpha=1e-3)
                p.grad = None
    return compare(hand, auto)

def us(t): return f'{t*1e6:,.0f} us'

if __name__ == '__main__':
    torch.set_num_threads(1)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread, batch {BS}, float32\n')
    print('| convolution | pass | unfold | F.conv2d | median ratio unfold / F.conv2d |')
    print('|---|---|---|---|---|')
    mem = []
    for name, xs, ws, ig in SHAPES:
        fwd, fb, n_cols, n_x = conv_pair(xs, ws, ig)
        for what, (ta, tb, r) in (('forward', fwd), ('forward + backward', fb)):
            print(f'| {name} | {what} | {us(ta)} | {us(tb)} | {r:.2f} |', flush=True)
        mem.append(f'| {name} | {n_x/2**20:.2f} MiB | {n_cols/2**20:.2f} MiB | {n_cols/n_x:.2f}x |')
    ta, tb, r = step_pair()
    print(f'| whole CNN training step | forward + backward + SGD | {us(ta)} | {us(tb)} | {r:.2f} |')
    print('\n| convolution | input | patch matrix | patch matrix / input |\n|---|---|---|---|')
    print('\n'.join(mem))
