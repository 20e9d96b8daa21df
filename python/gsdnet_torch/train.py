"""Train GSDNet on a split folder's train/, select on val/, optionally export to ONNX + manifest.

One command from scratch; the defaults are the committed CMU-MOSI configuration (docs/MODEL.md):
    python3 -m gsdnet_torch.train --seed 0 --export models/gsdnet-mosi
Any layout of gsdnet_ref.data (CMU-MOSI, IEMOCAP): the modalities are the feature files present,
K the classes of the labels, conversations longer than W are cut into consecutive windows, and
the regression head exists only for continuous labels (manifests' [training] command has the
IEMOCAP flags). Loss = task (CE over K classes, + 0.5 MSE of the regression head where there is
one) + alpha (recon + DSM_theta + DSM_phi).
Stage 1 trains everything with the mean-fill encoding at missing entries, the score stage
trains s_theta / s_phi on the frozen encoders, stage 2 fine-tunes the fusion on the output of
the real few-step sampler; every stage selects its epoch on val/ (`--sel-metric`: accuracy for
CMU-MOSI, weighted F1 for categorical labels, mean over the protocol rates); last, the
conversation prior's gain and temperature are chosen on val/ (docs/MODEL.md item 12).
--fusion-members K > 1 makes the fusion an ensemble averaged inside fusion.onnx (measured, not
committed). Selection and the prior grid: gsdnet_torch/selection.py; training masks and input
perturbations: gsdnet_torch/augment.py; random crops of the training windows (`--crop-prob`):
gsdnet_torch/crops.py. See docs/MODEL.md.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref.paths import SHARED_DATA
from gsdnet_torch import common, crops, members
from gsdnet_torch.adjdiff import adj_losses
from gsdnet_torch.augment import draw_train_avail, noisy_inputs, noisy_latents
from gsdnet_torch.selection import SEL_RATES, sel_rates, select_prior
from gsdnet_torch.model import GSDNet, adj_from_lam, spectrum, ve_std
from gsdnet_torch.observed import full_mask, obs_mask

DATA = SHARED_DATA / "cmu-mosi"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--text-view", default=None, metavar="NAME",
                   help="read the text modality from text_NAME.f32 (minilm: the all-MiniLM-L6-v2 "
                   "sentence embedding, which the exported manifest declares as the text frontend)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--ft-epochs", type=int, default=8, help="stage-2 fusion fine-tune epochs")
    p.add_argument("--score-epochs", type=int, default=15, help="score-net-only epochs")
    p.add_argument("--reps", type=int, default=2, help="mask draws per video per epoch")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--hid", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--sigma-x", type=float, default=25.0)
    p.add_argument("--sigma-l", type=float, default=2.0)
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--window-same", type=int, default=1)
    p.add_argument("--window-other", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--variant", choices=["gsdnet", "det", "adj"], default="gsdnet",
                   help="gsdnet, or ablation (d) det completion / (b) adjacency-space diffusion")
    p.add_argument("--sel-seeds", type=int, default=2, help="mask seeds in val selection")
    p.add_argument("--sel-rates", type=int, choices=[4, 8], default=8,
                   help="4: rates 0.0/0.3/0.5/0.7 (those within the protocol); 8: every "
                        "protocol rate (0.0-0.7 with three modalities, 0.0-0.5 with two)")
    p.add_argument("--sel-patterns", nargs="*", default=[], metavar="P",
                   help="fixed availability patterns (letters of the available modalities, "
                        "e.g. T A) added to the selection set, one scenario per mask seed")
    p.add_argument("--sel-metric", choices=["auto", "accuracy", "f1_weighted"], default="auto",
                   help="val selection metric; auto: accuracy with a regression head "
                        "(CMU-MOSI acc2), else weighted F1 (IEMOCAP)")
    _variant_args(p)
    return p.parse_args(argv)


def _variant_args(p) -> None:
    """Options of the fusion variants and training perturbations measured in docs/MODEL.md."""
    p.add_argument("--fusion-layers", type=int, default=2)
    p.add_argument("--in-dropout", type=float, default=0.2)
    p.add_argument("--cmp-init", choices=["zero", "random"], default="zero",
                   help="initialisation of the fusion's weights for completed latents")
    p.add_argument("--fusion-members", type=int, default=1,
                   help="K fusion members averaged inside fusion.onnx (variance reduction; 5 "
                        "halves the spread over training seeds at 5x the fusion's cost, "
                        "docs/MODEL.md item 11)")
    p.add_argument("--members", type=int, default=1, metavar="K",
                   help="K models trained apart in stage 1 (seeds seed .. seed+K-1, each "
                        "selected on val) and merged into one (gsdnet_torch.members; latent "
                        "K x --d); the IEMOCAP models use 5 (docs/MODEL.md IEMOCAP item 8)")
    p.add_argument("--enc-hidden", type=int, default=0, metavar="H",
                   help="encoders: Linear(dim, H) -> ReLU -> Linear(H, d) instead of one Linear "
                        "(0); the IEMOCAP models use 128")
    p.add_argument("--fusion-ctx", choices=["mean", "attn"], default="mean",
                   help="fusion context message: masked mean or masked attention over nodes")
    p.add_argument("--nb-means", action="store_true",
                   help="fusion input: per modality the mean of the structural neighbours' "
                        "observed latents (missing ones left out); the 4-way IEMOCAP model")
    p.add_argument("--train-rate-max", type=float, default=None,
                   help="training missing rates are drawn from U(0, this); default the "
                        "protocol maximum (0.7 with three modalities, 0.5 with two)")
    p.add_argument("--pattern-prob", type=float, default=0.0,
                   help="probability per training window of a fixed pattern missing a "
                        "modality on every utterance (instead of the rate mask)")
    p.add_argument("--train-noise", type=float, nargs="+", default=None, metavar="S",
                   help="std of Gaussian noise added to the standardised training inputs of "
                   "the fusion-trained stages, one per modality (slot order); default 0")
    p.add_argument("--swap-prob", type=float, nargs="+", default=None, metavar="Q",
                   help="probability, per valid training node and modality (one per modality),"
                   " of replacing the input with that of a random training utterance "
                   "(leak calibration, docs/MODEL.md); default 0")
    p.add_argument("--crop-prob", type=float, default=0.0,
                   help="stage 1: probability per training window of one of its random crops "
                   "instead (gsdnet_torch.crops); the 4-way IEMOCAP model uses 0.5")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--no-prior", dest="prior", action="store_false",
                   help="leave the conversation prior off (gain 0) instead of selecting it")
    p.add_argument("--prior-seeds", type=int, default=4,
                   help="mask seeds of the conversation prior's selection on val")
    p.add_argument("--member-masks", action="store_true",
                   help="stage 1: each fusion member trains on its own mask draw")
    p.add_argument("--ema", type=float, default=0.0,
                   help="stage 1: select among exponential moving averages of the weights "
                   "(this decay per step) instead of the raw weights; 0 = off")
    p.add_argument("--latent-noise", type=float, nargs="+", default=None, metavar="S",
                   help="std of Gaussian noise on the fusion's input latents during training, "
                   "one per modality (tanh-bounded latents); default 0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fusion-input", choices=["sampler", "meanfill"],
                   default="meanfill", help="what stands in for missing latents in stage 1")
    p.add_argument("--save", default=None, help="checkpoint path (.pt)")
    p.add_argument("--export", default=None, help="model folder to export to")


def score_losses(model, hd, avail, nm, u, args, gen):
    """DSM losses of s_theta (missing entries) and s_phi (modalities not fully observed).

    Targets are the detached latents `hd`, so the score losses never move the encoders.
    """
    obs = obs_mask(avail, nm)
    miss = (1 - obs) * nm[:, None, :, None]
    full = full_mask(avail, nm)
    cd = hd * obs
    lam_true, lam_obs = spectrum(hd, u, nm), spectrum(cd, u, nm)
    variant = model.cfg["variant"]
    if variant == "det":
        x0, lam0 = common.det_complete(model, hd, cd, avail, nm, u, lam_obs)
        nf = 1 - full
        l_th = ((x0 - hd) ** 2 * miss).sum() / torch.clamp(miss.sum() * hd.shape[-1], min=1.0)
        l_ph = ((lam0 - lam_true) ** 2 * nf).sum() / torch.clamp(nf.sum() * args.k, min=1.0)
        return l_th, l_ph
    if variant == "adj":
        return adj_losses(model, hd, cd, avail, nm, u, args, gen)
    b = hd.shape[0]
    t = args.eps + (1 - args.eps) * torch.rand(b, generator=gen)
    std_x, std_l = ve_std(t, args.sigma_x), ve_std(t, args.sigma_l)
    z = torch.randn(hd.shape, generator=gen)
    zl = torch.randn(lam_true.shape, generator=gen)
    x_t = hd + std_x[:, None, None, None] * z
    lam_t = torch.where(full > 0, lam_obs, lam_true) + std_l[:, None, None] * zl
    net, _ = model.s_theta.net(x_t, t, cd, avail, adj_from_lam(u, lam_t), nm)
    l_th = ((net + z) ** 2 * miss).sum() / torch.clamp(miss.sum() * hd.shape[-1], min=1.0)
    netl, _ = model.s_phi.net(lam_t, t, lam_obs, u, cd, avail, nm)
    nf = 1 - full
    l_ph = ((netl + zl) ** 2 * nf).sum() / torch.clamp(nf.sum() * args.k, min=1.0)
    return l_th, l_ph


def train_losses(model, tb, idx, avail, args, gen):
    """Joint loss of one minibatch; returns (total, parts dict)."""
    nm, u, adj = tb.node_mask[idx], tb.u[idx], tb.adj[idx]
    clean = [x[idx] for x in tb.x]
    xs = noisy_inputs(clean, args, gen, tb.pools)
    h = model.encoders(*xs)
    hd = h.detach()
    l_th, l_ph = score_losses(model, hd, avail, nm, u, args, gen)
    if args.member_masks and hasattr(model.fusion, "members"):
        l_task = member_masks_loss(model, tb, idx, avail, xs, h, args, gen)
    else:
        x_f, lam0 = fusion_input(model, args, xs, h, avail, nm, u, gen)
        x_f = noisy_latents(x_f, nm, args, gen)
        l_task = fusion_loss(model, x_f, avail, common.fusion_adj(adj, u, lam0), nm,
                             tb.y[idx], tb.y_cont[idx], args.label_smoothing)
    recs = model.recon(h)
    l_rec = sum(((r - x) ** 2).mean(-1).mul(nm).sum() for r, x in zip(recs, clean)) \
        / (len(recs) * nm.sum())
    total = l_task + args.alpha * (l_rec + l_th + l_ph)
    return total, dict(task=l_task.item(), rec=l_rec.item(), th=l_th.item(), ph=l_ph.item())


def member_masks_loss(model, tb, idx, avail, xs, h, args, gen):
    """Mean task loss of the fusion members, member j > 0 on its own fresh mask draw of the
    same windows (more diverse members, more mask patterns per step)."""
    nm, u, adj = tb.node_mask[idx], tb.u[idx], tb.adj[idx]
    losses = []
    for j, member in enumerate(model.fusion.members):
        a = avail if j == 0 else draw_train_avail(nm, gen, args.train_rate_max, len(xs),
                                                   args.pattern_prob)
        x_f, lam0 = fusion_input(model, args, xs, h, a, nm, u, gen)
        lg, rg = member(noisy_latents(x_f, nm, args, gen), a, common.fusion_adj(adj, u, lam0), nm)
        losses.append(task_loss(lg, rg, tb.y[idx], tb.y_cont[idx], nm, args.label_smoothing))
    return sum(losses) / len(losses)


def fusion_input(model, args, xs, h, avail, nm, u, gen):
    """Latents and spectrum the fusion trains on: observed entries exact (with gradient)."""
    obs = obs_mask(avail, nm)
    hd = h.detach()
    cd = hd * obs
    lam_obs = spectrum(cd, u, nm)
    if args.fusion_input == "sampler":
        model.eval()
        x0, lam0 = common.complete(model, hd, cd, avail, nm, u, lam_obs, args.steps,
                                   args.eps, gen)
        model.train()
    else:   # meanfill: the encoding of the mean-filled input at missing entries
        x0, lam0 = model.encoders(*[x * avail[:, :, j:j + 1] for j, x in enumerate(xs)]), lam_obs
    return torch.where(obs > 0, h, x0) * nm[:, None, :, None], lam0


def fusion_loss(model, x, avail, adj, nm, yb, yc, smoothing=0.0):
    """Task loss of the fusion; for an ensemble, the mean of the members' own losses."""
    fus = model.fusion
    outs = fus.members_forward(x, avail, adj, nm) if hasattr(fus, "members_forward") \
        else [fus(x, avail, adj, nm)]
    return sum(task_loss(lg, rg, yb, yc, nm, smoothing) for lg, rg in outs) / len(outs)


def task_loss(logits, reg, yb, yc, nm, smoothing=0.0):
    """Cross-entropy over the K classes of `logits`, + 0.5 MSE of the regression head where
    there is one, over the valid nodes."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none",
                         label_smoothing=smoothing)
    m = nm.reshape(-1)
    if reg is None:
        return (ce * m).sum() / m.sum()
    mse = ((reg[..., 0] - yc) ** 2).reshape(-1)
    return ((ce + 0.5 * mse) * m).sum() / m.sum()


def val_score(model, vb, args, completion="gsdnet", seeds=None, rates=None):
    """Mean selection metric (--sel-metric) over rates and mask seeds (torch sampler noise,
    protocol masks); defaults are the selection set (--sel-seeds mask seeds, --sel-rates)."""
    seeds = tuple(range(args.sel_seeds)) if seeds is None else seeds
    scenarios = [dict(rate=r) for r in (sel_rates(args) if rates is None else rates)]
    if rates is None:
        scenarios += [dict(pattern=p) for p in args.sel_patterns]
    model.eval()
    accs = []
    for s in seeds:
        gen = torch.Generator().manual_seed(1000 + s)
        for sc in scenarios:
            avail = common.protocol_avail(vb, s, **sc)
            lg, rg = common.predict(model, vb, avail, completion, args.steps, args.eps, gen)
            accs.append(common.metrics(lg, rg, vb)[args.sel_metric])
    model.train()
    return float(np.mean(accs)), accs


def _batches(v, args, gen):
    for _ in range(args.reps):
        perm = torch.randperm(v, generator=gen)
        for s in range(0, v, args.batch):
            yield perm[s:s + args.batch]


def stage1(model, tb, vb, args, gen, log, pool=None):
    """Joint training (task + alpha (rec + DSM)); selection on val mean acc2 of the completion
    the fusion is trained with. With a crop `pool`, minibatches draw from its windows."""
    src = tb if pool is None else pool.batch
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    sel = "gsdnet" if args.fusion_input == "sampler" else "meanfill"
    best = (-1.0, None, -1)
    ema, step = copy.deepcopy(model.state_dict()), 0
    for ep in range(args.epochs):
        parts = []
        for idx in _batches(len(tb.n), args, gen):
            if pool is not None:
                idx = pool.draw(idx, gen)
            avail = draw_train_avail(src.node_mask[idx], gen, args.train_rate_max, len(tb.x),
                                     args.pattern_prob)
            loss, p = train_losses(model, src, idx, avail, args, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            parts.append(p)
            step += 1
            if args.ema > 0:
                ema_update(ema, model, min(args.ema, step / (step + 10.0)))
        raw = copy.deepcopy(model.state_dict())
        if args.ema > 0:
            model.load_state_dict(ema)
        score, accs = val_score(model, vb, args, sel)
        mean_p = {k: round(float(np.mean([p[k] for p in parts])), 4) for k in parts[0]}
        log(f"ep {ep:3d} {mean_p} val {sel} {score:.4f} {np.round(accs, 3).tolist()}")
        if score > best[0]:
            best = (score, copy.deepcopy(model.state_dict()), ep)
        model.load_state_dict(raw)
    model.load_state_dict(best[1])
    return best[0], best[2]


@torch.no_grad()
def ema_update(ema: dict, model, decay: float) -> None:
    """ema <- decay ema + (1 - decay) current, for every floating-point tensor of the state."""
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].mul_(decay).add_(v, alpha=1.0 - decay)
        else:
            ema[k].copy_(v)


def val_dsm(model, vb, args):
    """DSM loss of both score nets on val (fixed masks and noise): the score-net criterion."""
    gen = torch.Generator().manual_seed(99)
    tot = []
    with torch.no_grad():
        h = model.encoders(*vb.x)
        rates = [r for r in (0.3, 0.5, 0.7) if r <= gmasks.max_rate(len(vb.x))]
        for s in range(3):
            for r in rates:
                avail = common.protocol_avail(vb, s, rate=r)
                l_th, l_ph = score_losses(model, h, avail, vb.node_mask, vb.u, args, gen)
                tot.append((l_th.item(), l_ph.item()))
    return np.mean(tot, axis=0)


def completion_mse(model, vb, args):
    """Val MSE of completed vs true latents at missing entries, rate 0.5 seed 0: sampler and
    the mean-fill encoding (diagnostic for MODEL.md)."""
    gen = torch.Generator().manual_seed(7)
    nm = vb.node_mask
    avail = common.protocol_avail(vb, 0, rate=0.5)
    with torch.no_grad():
        h_true = model.encoders(*vb.x)
        h, cond = common.encode_inputs(model, vb, torch.arange(len(vb.n)), avail, "meanfill")
        x0, _ = common.complete(model, h, cond, avail, nm, vb.u, spectrum(cond, vb.u, nm),
                                args.steps, args.eps, gen)
    miss = (1 - obs_mask(avail, nm)) * nm[:, None, :, None]
    per_dim = miss.sum() * h.shape[-1]
    f = lambda x: round(float(((x - h_true) ** 2 * miss).sum() / per_dim), 4)  # noqa: E731
    return dict(sampler=f(x0), meanfill=f(h))


def stage_scores(model, tb, vb, args, gen, log):
    """Score nets only, encoders frozen at their selected state; selection on val DSM."""
    frozen = ("encoders.", "fusion.", "recon.")
    params = [p for n, p in model.named_parameters() if not n.startswith(frozen)]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    best = (val_dsm(model, vb, args).sum(), copy.deepcopy(model.state_dict()), -1)
    for ep in range(args.score_epochs):
        for idx in _batches(len(tb.n), args, gen):
            nm = tb.node_mask[idx]
            with torch.no_grad():
                hd = model.encoders(*[x[idx] for x in tb.x])
            avail = draw_train_avail(nm, gen, gmasks.max_rate(len(tb.x)), len(tb.x),
                                     args.pattern_prob)
            l_th, l_ph = score_losses(model, hd, avail, nm, tb.u[idx], args, gen)
            opt.zero_grad()
            (l_th + l_ph).backward()
            opt.step()
        dsm = val_dsm(model, vb, args)
        log(f"score ep {ep:3d} val dsm theta {dsm[0]:.4f} phi {dsm[1]:.4f} "
            f"completion mse {completion_mse(model, vb, args)}")
        if dsm.sum() < best[0]:
            best = (dsm.sum(), copy.deepcopy(model.state_dict()), ep)
    model.load_state_dict(best[1])
    return best[2]


def stage2(model, tb, vb, args, gen, log):
    """Fine-tune the fusion only on few-step sampler outputs of train windows (fresh masks)."""
    if args.ft_epochs <= 0:
        return None
    opt = torch.optim.AdamW(model.fusion.parameters(), lr=args.lr * 0.5, weight_decay=args.wd)
    best = (val_score(model, vb, args)[0], copy.deepcopy(model.state_dict()), -1)
    log(f"ft start val gsdnet {best[0]:.4f}")
    mode, args.fusion_input = args.fusion_input, "sampler"
    for ep in range(args.ft_epochs):
        for idx in _batches(len(tb.n), args, gen):
            nm, u = tb.node_mask[idx], tb.u[idx]
            avail = draw_train_avail(nm, gen, args.train_rate_max, len(tb.x), args.pattern_prob)
            xs = noisy_inputs([x[idx] for x in tb.x], args, gen, tb.pools)
            with torch.no_grad():
                h = model.encoders(*xs)
            x0, lam0 = fusion_input(model, args, xs, h, avail, nm, u, gen)
            x0 = noisy_latents(x0, nm, args, gen)
            loss = fusion_loss(model, x0, avail, common.fusion_adj(tb.adj[idx], u, lam0), nm,
                               tb.y[idx], tb.y_cont[idx], args.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
        score, accs = val_score(model, vb, args)
        log(f"ft {ep:3d} val gsdnet {score:.4f} {np.round(accs, 3).tolist()}")
        if score > best[0]:
            best = (score, copy.deepcopy(model.state_dict()), ep)
    args.fusion_input = mode
    model.load_state_dict(best[1])
    return best[2]


def resolve_args(args, info: gdata.SplitInfo):
    """Fills the data-dependent defaults: per-modality option lengths, the training rate
    maximum, the selection metric (CMU-MOSI keeps every default it had)."""
    m = len(info.dims)
    args.n_modalities = m
    for name in ("train_noise", "swap_prob", "latent_noise"):
        v = getattr(args, name)
        if v is None:
            setattr(args, name, [0.0] * m)
        elif len(v) != m:
            raise SystemExit(f"--{name.replace('_', '-')}: {len(v)} values for {m} modalities "
                             f"({', '.join(info.dims)})")
    if args.members < 1 or (args.members > 1 and (args.fusion_members > 1 or args.member_masks)):
        raise SystemExit(f"--members {args.members}: at least 1, and not with --fusion-members "
                         "or --member-masks")
    if args.train_rate_max is None:
        args.train_rate_max = gmasks.max_rate(m)
    if args.sel_metric == "auto":
        args.sel_metric = "acc2" if info.has_regression else "f1_weighted"
    return args


def build_model(args, info: gdata.SplitInfo, n_members: int = 1) -> GSDNet:
    """The model of `args`; with `n_members` K > 1 the merged model of K members (d and the
    encoders' hidden width K times the member's)."""
    return GSDNet(d=args.d * n_members, k=args.k, width=args.width, hid=args.hid,
                  sigma_x=args.sigma_x,
                  sigma_l=args.sigma_l, dropout=args.dropout, variant=args.variant,
                  fusion_layers=args.fusion_layers, in_dropout=args.in_dropout,
                  cmp_zero=args.cmp_init == "zero", fusion_members=args.fusion_members,
                  fusion_ctx=args.fusion_ctx, enc_hidden=args.enc_hidden * n_members,
                  dims=tuple(info.dims.values()),
                  modalities=tuple(info.dims), n_classes=len(info.classes),
                  regression=info.has_regression, members=n_members, nb_means=args.nb_means)


def stage1_members(args, info, tb, vb, log, pools):
    """Stage 1 of K members, member j on seed + j exactly as a single model of that seed is
    trained (its own selection on val; `pools(seed)` its crop pool or None), then the merge.
    Returns (model, score, epochs): the merged model, its stage-1 selection score and the
    members' best epochs."""
    parts, epochs = [], []
    for j in range(args.members):
        torch.manual_seed(args.seed + j)
        part = build_model(args, info)
        gen = torch.Generator().manual_seed(args.seed + j)
        score, ep = stage1(part, tb, vb, args, gen, log, pools(args.seed + j))
        log(f"member {j} (seed {args.seed + j}): stage 1 best epoch {ep} val {score:.4f}")
        parts.append(part)
        epochs.append(ep)
    torch.manual_seed(args.seed)
    model = members.merge(parts, build_model(args, info, args.members))
    sel = "gsdnet" if args.fusion_input == "sampler" else "meanfill"
    return model, val_score(model, vb, args, sel)[0], epochs


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    log = lambda s: print(f"[{time.time() - t0:6.1f}s] {s}", flush=True)  # noqa: E731
    files = gdata.view_files(args.text_view)
    sinfo = gdata.split_info(Path(args.data) / "train", files)
    resolve_args(args, sinfo)
    train = gdata.load_split(Path(args.data) / "train", sinfo.dims, files)
    val = gdata.load_split(Path(args.data) / "val", sinfo.dims, files)
    stats = gdata.feature_stats(train)
    mk = lambda cs: common.make_batch(cs, stats, args.width, args.k, args.window_same,  # noqa
                                      args.window_other)
    tb, vb = mk(train), mk(val)
    tb.pools = [x[tb.node_mask > 0] for x in tb.x]   # every valid training row, per modality
    log(f"{sinfo.layout}: modalities {sinfo.dims}, {len(sinfo.classes)} classes, "
        f"{len(tb.n)} / {len(vb.n)} train / val windows, selection {args.sel_metric}")
    pools = lambda s: (crops.crop_pool(tb, train, mk, args.width, s, args.crop_prob)  # noqa
                       if args.crop_prob > 0 else None)
    if args.members > 1:
        model, score, ep = stage1_members(args, sinfo, tb, vb, log, pools)
    else:
        model = build_model(args, sinfo)
        score, ep = stage1(model, tb, vb, args, gen, log, pools(args.seed))
    log(f"stage 1 best epoch {ep} val {score:.4f}")
    sc_ep = stage_scores(model, tb, vb, args, gen, log)
    log(f"score stage best epoch {sc_ep}")
    ft_ep = stage2(model, tb, vb, args, gen, log)
    prior = select_prior(model, vb, args, log) if args.prior else None
    model.eval()
    rates = tuple(r for r in SEL_RATES if r <= gmasks.max_rate(len(sinfo.dims)) + 1e-9)
    final = {c: val_score(model, vb, args, c, seeds=(0, 1, 2), rates=rates)[0]
             for c in ("gsdnet", "meanfill", "zero")}
    log(f"final val (3 mask seeds, rates {rates}): {final}")
    info = dict(args=vars(args), argv=list(sys.argv[1:] if argv is None else argv),
                best_epoch=ep, score_best_epoch=sc_ep, ft_best_epoch=ft_ep, val=final, prior=prior,
                data_sha256=gdata.split_sha256(Path(args.data) / "train", tuple(sinfo.dims), files),
                feature_files=files,
                stats={m: [s.tolist() for s in stats[m]] for m in stats},
                layout=sinfo.layout, classes=list(sinfo.classes),
                has_regression=sinfo.has_regression)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(state=model.state_dict(), cfg=model.cfg, info=info), args.save)
    if args.export:
        from gsdnet_torch.export import export_model
        export_model(model, info, Path(args.export), argv if argv is not None else sys.argv[1:])
    return model, info


if __name__ == "__main__":
    main()
