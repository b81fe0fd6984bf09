"""Hand-written backprop against autograd: time of one training step of the MLP 784-50-10.

Both steps do the forward pass, the backward pass and a plain SGD update on the same batch. They run alternately
in one process (blocks of `STEPS` steps, `ROUNDS` rounds), so that load from other processes hits both alike;
the number reported is the median of the per-round ratios hand-written / autograd. The target is <= 1.15.

    python bench/backprop_speed.py
"""
import statistics, time
import torch
import torch.nn.functional as F
from fastfound.backprop import CrossEntropy, Lin, Relu, SGD, Sequential, mlp

STEPS, ROUNDS, LR = 20, 41, 0.01

def hand_stepper(init):
    params = [p.clone() for p in init]
    net = Sequential(Lin(*params[:2], input_grad=False), Relu(), Lin(*params[2:]))
    loss_fn, opt = CrossEntropy(), SGD(params, LR)
    def step(x, y):
        loss_fn(net(x), y); loss_fn.backward(); net.backward(); opt.step()
    return step

def autograd_stepper(init):
    w1, b1, w2, b2 = params = [p.clone().requires_grad_() for p in init]
    def step(x, y):
        F.cross_entropy(F.linear(F.relu(F.linear(x, w1.t(), b1)), w2.t(), b2), y).backward()
        with torch.no_grad():
            for p in params: p.sub_(p.grad, alpha=LR); p.grad = None
    return step

def per_step(step, x, y):
    t0 = time.perf_counter()
    for _ in range(STEPS): step(x, y)
    return (time.perf_counter() - t0) / STEPS

def compare(bs):
    torch.manual_seed(0)
    x, y = torch.randn(bs, 784), torch.randint(0, 10, (bs,))
    init = mlp([784, 50, 10]).parameters()
    hand, auto = hand_stepper(init), autograd_stepper(init)
    for s in (hand, auto): per_step(s, x, y)  # warm up
    th, ta = [], []
    for r in range(ROUNDS):
        pair = (hand, th), (auto, ta)
        for s, times in (pair if r % 2 == 0 else pair[::-1]): times.append(per_step(s, x, y))
    return statistics.median(th), statistics.median(ta), statistics.median(h / a for h, a in zip(th, ta))

if __name__ == '__main__':
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    print('| batch | hand-written step | autograd step | median ratio hand/autograd |')
    print('|---|---|---|---|')
    for bs in (32, 64, 256):
        th, ta, r = compare(bs)
        print(f'| {bs} | {th*1e6:.0f} us | {ta*1e6:.0f} us | {r:.2f} |', flush=True)
