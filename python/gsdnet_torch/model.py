"""The five GSDNet parts in PyTorch, written with ONNX-exportable plain ops only.

Owns: Encoders, STheta, SPhi, Recon, Fusion (I/O exactly as docs/DESIGN.md "ONNX parts", with
a batch dimension B) for M modalities of the given sizes (`dims`, canonical slot order) and K
classes, the optional regression head, the conversation prior (binary form for K = 2, softmax
form for K > 2), the VE-SDE std(t) as Exp/Sqrt ops, and a torch spectrum() that mirrors
gsdnet_ref.graph.spectrum; also the adjacency score network of ablation (b) (AdjScore, never
exported; its loss and sampler are in adjdiff.py). No Einsum, no data-dependent shapes, no Pow
with a tensor exponent.
The batch B and the window W of every part are free (export.py exports them as the symbolic
axes "batch" / "window"): shapes come from the inputs (Shape ops) only in the encoders
(positional embedding slice pos[:W], [B*W, dim] projection); elsewhere reshapes keep B and W
in -1 or Split / Concat.
With the defaults (CMU-MOSI: dims 100 / 73 / 100, K = 2, regression) every part is the one
exported since the first model, parameter for parameter.
"""
from __future__ import annotations

import math

import torch
from torch import nn

MOSI_DIMS = (100, 73, 100)   # the defaults: checkpoints written before issue 11 carry no dims


def ve_std(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """sqrt((sigma^(2t) - 1) / (2 ln sigma)), sigma^(2t) written as exp(2 t ln sigma)."""
    ln = math.log(sigma)
    return torch.sqrt((torch.exp(t * (2.0 * ln)) - 1.0) / (2.0 * ln))


class TimeEmbed(nn.Module):
    """Fourier features of t in [0, 1] followed by a linear map to `hid`."""

    def __init__(self, hid: int, n_freq: int = 8):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freq).float()) * math.pi)
        self.lin = nn.Linear(2 * n_freq, hid)

    def forward(self, t: torch.Tensor) -> torch.Tensor:   # t [B] -> [B, hid]
        a = t[:, None] * self.freqs[None, :]
        return self.lin(torch.cat([torch.sin(a), torch.cos(a)], dim=-1))


class HiddenProjection(nn.Module):
    """Linear(dim, hidden) -> ReLU -> Linear(hidden, d): an encoder projection with one hidden
    layer (exported as Gemm, Relu, Gemm). The IEMOCAP models use it with hidden 128: the single
    Linear squeezed the 384 MiniLM values into d = 16 and lost what the BiLSTM peer reads
    (docs/MODEL.md "IEMOCAP" item 5)."""

    def __init__(self, dim: int, hidden: int, d: int):
        super().__init__()
        self.in_features = dim
        self.a, self.b = nn.Linear(dim, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class Encoders(nn.Module):
    """Per-utterance projection (Conv1d kernel 1 == Linear, or with `hidden` > 0 a
    HiddenProjection) + tanh + learned positional embedding."""

    def __init__(self, d: int, width: int, dims=MOSI_DIMS, hidden: int = 0):
        super().__init__()
        self.lins = nn.ModuleList([HiddenProjection(dim, hidden, d) if hidden else nn.Linear(dim, d)
                                   for dim in dims])
        self.pos = nn.Parameter(torch.zeros(width, d))

    def forward(self, *xs):                                 # M x [B,W,dim] -> [B,M,W,d]
        b, w = xs[0].shape[0], xs[0].shape[1]               # symbolic in the exported part
        pos = self.pos[:w]                                  # W <= width: the first W rows
        # the projection on [B*W, dim] (an ONNX Gemm, the op onnxruntime fused the fixed-shape
        # part's MatMul + Add into, so its numbers stay those of the batch-1 W = 64 export)
        hs = [torch.tanh(lin(x.reshape(-1, lin.in_features))).reshape(b, w, -1) + pos
              for lin, x in zip(self.lins, xs)]
        return torch.stack(hs, dim=1)


SIGMA_DATA = 0.5


def precond(std: torch.Tensor):
    """EDM preconditioning for VE noise: (c_in, c_skip, c_out) of the denoiser
    D(x) = c_skip x + c_out F(c_in x); the score is (D(x) - x) / std^2."""
    var = std * std + SIGMA_DATA * SIGMA_DATA
    inv_sqrt = torch.exp(-0.5 * torch.log(var))      # Exp/Log instead of ONNX Reciprocal
    return inv_sqrt, SIGMA_DATA * SIGMA_DATA * inv_sqrt * inv_sqrt, std * SIGMA_DATA * inv_sqrt


def _nodes(x: torch.Tensor) -> torch.Tensor:
    """[B,M,W,d] -> [B,W,Md] (modalities concatenated per utterance; Split + Concat, so B and
    W stay free in the exported graph)."""
    return torch.cat(x.unbind(1), dim=-1)


class STheta(nn.Module):
    """Feature score: GCN layers on the M spectral adjacencies A_t[m], time + condition."""

    def __init__(self, d: int, hid: int, sigma_x: float, layers: int = 2, m: int = 3):
        super().__init__()
        self.d, self.sigma, self.m = d, sigma_x, m
        self.inp = nn.Linear(2 * m * d + m, hid)
        self.temb = TimeEmbed(hid)
        self.self_lin = nn.ModuleList([nn.Linear(hid, hid) for _ in range(layers)])
        self.rel_lin = nn.ModuleList([nn.Linear(m * hid, hid, bias=False) for _ in range(layers)])
        self.out = nn.Linear(hid, m * d)

    def net(self, x_t, t, cond, avail, adj_t, node_mask):
        """std(t) * score, i.e. the DSM target -z; returns (that, std)."""
        std = ve_std(t, self.sigma)                           # [B]
        c_in, c_skip, c_out = precond(std)
        z = torch.cat([_nodes(x_t) * c_in[:, None, None], _nodes(cond), avail], dim=-1)
        mask = node_mask[:, :, None]
        z = torch.relu(self.inp(z) + self.temb(t)[:, None, :]) * mask
        for sl, rl in zip(self.self_lin, self.rel_lin):
            msg = torch.cat([adj_t[:, m] @ z for m in range(self.m)], dim=-1)
            z = (z + torch.relu(sl(z) + rl(msg))) * mask
        f = torch.stack(self.out(z).split(self.d, dim=-1), dim=1)   # [B,W,Md] -> [B,M,W,d]
        e = lambda c: c[:, None, None, None]  # noqa: E731
        den = e(c_skip) * x_t + e(c_out) * f
        return (den - x_t) / e(std) * node_mask[:, None, :, None], std

    def forward(self, x_t, t, cond, avail, adj_t, node_mask):
        out, std = self.net(x_t, t, cond, avail, adj_t, node_mask)
        return out / std[:, None, None, None]


class SPhi(nn.Module):
    """Eigenvalue score from lam_t, time, lam_obs, pooled condition, availability and its
    spectral coefficients u^T avail (where the gaps sit in the frozen basis)."""

    def __init__(self, d: int, k: int, hid: int, sigma_l: float, m: int = 3):
        super().__init__()
        self.k, self.d, self.sigma, self.m = k, d, sigma_l, m
        self.inp = nn.Linear(3 * m * k + m * d + m, hid)
        self.temb = TimeEmbed(hid)
        self.mid = nn.Linear(hid, hid)
        self.out = nn.Linear(hid, m * k)

    def net(self, lam_t, t, lam_obs, u, cond, avail, node_mask):
        """std(t) * score of the eigenvalues; returns (that, std)."""
        std = ve_std(t, self.sigma)
        c_in, c_skip, c_out = precond(std)
        n = torch.clamp(node_mask.sum(dim=1, keepdim=True), min=1.0)        # [B,1]
        pooled = cond.sum(dim=2) / n[:, :, None]                           # [B,M,d]
        frac = (avail * node_mask[:, :, None]).sum(dim=1) / n              # [B,M]
        mk, md = self.m * self.k, self.m * self.d
        a_spec = u.transpose(1, 2) @ (avail * node_mask[:, :, None])       # [B,k,M]
        feat = torch.cat([lam_t.reshape(-1, mk) * c_in[:, None], lam_obs.reshape(-1, mk),
                          pooled.reshape(-1, md), frac, a_spec.reshape(-1, mk) / n], dim=-1)
        z = torch.relu(self.inp(feat) + self.temb(t))
        z = z + torch.relu(self.mid(z))
        f = self.out(z).reshape(-1, self.m, self.k)
        den = c_skip[:, None, None] * lam_t + c_out[:, None, None] * f
        return (den - lam_t) / std[:, None, None], std

    def forward(self, lam_t, t, lam_obs, u, cond, avail, node_mask):
        out, std = self.net(lam_t, t, lam_obs, u, cond, avail, node_mask)
        return out / std[:, None, None]


class Recon(nn.Module):
    """Latent -> standardised raw features, per modality."""

    def __init__(self, d: int, dims=MOSI_DIMS):
        super().__init__()
        self.lins = nn.ModuleList([nn.Linear(d, dim) for dim in dims])

    def forward(self, x):
        return tuple(lin(x[:, m]) for m, lin in enumerate(self.lins))


NB_EPS = 1e-3   # added to the observed weight of a neighbour mean (0 where none observed)
NEG = 1e4   # additive attention bias of padded nodes: exp(-1e4) underflows to exactly 0


class Fusion(nn.Module):
    """Two-relation GCN (structural graph, recovered spectral graph) plus a conversation-level
    context message, then the classifier (K classes) and, where the labels are continuous, the
    regression head (forward returns reg None without one). Observed and completed latents enter
    through separate weights, so the network learns how far to trust a completion independently
    of the observed evidence. Context `mean`: masked mean of the node states; `attn`: one-head
    masked attention over the valid nodes of the window (keys carry the availability bits
    through the node states, so utterances lacking a modality can draw on neighbours that have
    it); padded nodes get a -1e4 bias, so their weight is exactly 0.
    `nb_means`: each node also reads, per modality, the mean of its structural neighbours'
    *observed* latents (neighbours missing that modality left out, the node itself included)
    and the share of its neighbours' weight that observed it; the GCN's own messages average
    the node states, in which a neighbour's missing modality is only the mean fill (docs/MODEL.md,
    IEMOCAP item 8)."""

    def __init__(self, d: int, hid: int, layers: int = 2, dropout: float = 0.5,
                 in_dropout: float = 0.2, cmp_zero: bool = False, ctx: str = "mean",
                 att_dim: int = 16, m: int = 3, n_classes: int = 2, regression: bool = True,
                 nb_means: bool = False):
        super().__init__()
        self.ctx_mode = ctx
        self.inp_nb = nn.Linear(m * d + m, hid, bias=False) if nb_means else None
        self.inp = nn.Linear(m * d + m, hid)
        self.inp_cmp = nn.Linear(m * d, hid, bias=False)
        if cmp_zero:   # completed latents start ignored; only training on them gives weight
            nn.init.zeros_(self.inp_cmp.weight)
        self.self_lin = nn.ModuleList([nn.Linear(hid, hid) for _ in range(layers)])
        self.rel_lin = nn.ModuleList([nn.Linear(3 * hid, hid, bias=False) for _ in range(layers)])
        if ctx == "attn":
            self.att_q = nn.ModuleList([nn.Linear(hid, att_dim) for _ in range(layers)])
            self.att_k = nn.ModuleList([nn.Linear(hid, att_dim) for _ in range(layers)])
            self.att_scale = 1.0 / math.sqrt(att_dim)
        self.in_drop = nn.Dropout(in_dropout)
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(hid, n_classes)
        self.reg = nn.Linear(hid, 1) if regression else None

    def _context(self, z, layer, node_mask, n):
        """[B,W,hid] context message of every node (0 on padded nodes)."""
        mask = node_mask[:, :, None]
        if self.ctx_mode == "mean":
            return (z.sum(dim=1, keepdim=True) / n) * mask
        q, k = self.att_q[layer](z), self.att_k[layer](z)
        bias = (node_mask[:, None, :] - 1.0) * NEG                                  # [B,1,W]
        att = torch.softmax(q @ k.transpose(1, 2) * self.att_scale + bias, dim=-1)  # [B,W,W]
        return (att @ z) * mask

    def _neighbour_means(self, x_obs, avail, a):
        """[B,W,Md+M]: per modality the a-weighted mean of the observed latents x_obs [B,M,W,d]
        (avail [B,W,M]; a [B,W,W] the normalised structural adjacency with self loops), then
        the observed share of each node's weight (0 on padded nodes)."""
        den = a @ avail                                                          # [B,W,M]
        means = [(a @ x_obs[:, j]) / (den[..., j:j + 1] + NB_EPS) for j in range(x_obs.shape[1])]
        share = den / (a.sum(dim=-1, keepdim=True) + NB_EPS)
        return torch.cat([self.in_drop(torch.cat(means, dim=-1)), share], dim=-1)

    def forward(self, x, avail, adj, node_mask):
        mask = node_mask[:, :, None]
        n = torch.clamp(node_mask.sum(dim=1, keepdim=True), min=1.0)[:, :, None]   # [B,1,1]
        x_obs = x * avail.permute(0, 2, 1)[:, :, :, None]
        z = self.inp(torch.cat([self.in_drop(_nodes(x_obs)), avail], dim=-1)) \
            + self.inp_cmp(self.in_drop(_nodes(x - x_obs)))
        if self.inp_nb is not None:
            z = z + self.inp_nb(self._neighbour_means(x_obs, avail, adj[:, 0]))
        z = self.drop(torch.relu(z)) * mask
        for i, (sl, rl) in enumerate(zip(self.self_lin, self.rel_lin)):
            ctx = self._context(z, i, node_mask, n)
            msg = torch.cat([adj[:, 0] @ z, adj[:, 1] @ z, ctx], dim=-1)
            z = self.drop((z + torch.relu(sl(z) + rl(msg))) * mask)
        return self.cls(z) * mask, None if self.reg is None else self.reg(z) * mask


class FusionEnsemble(nn.Module):
    """K independently initialised Fusion members on the same inputs; the part's outputs are
    the member means of logits and reg, so fusion.onnx keeps the I/O of a single Fusion.
    Training uses each member's own loss (`members_forward`), which keeps the members diverse
    (each sees its own dropout masks) and makes the mean a variance-reducing ensemble.
    `sliced`: member j reads only its own d/K latent dims (the fusion of K separately trained
    models merged into one, gsdnet_torch.members)."""

    def __init__(self, members: int, sliced: bool = False, **kw):
        super().__init__()
        self.sliced = sliced
        if sliced:   # member j reads latent dims [j d/K, (j+1) d/K): the merged members' model
            kw = dict(kw, d=kw["d"] // members)
        self.d_member = kw["d"]
        self.members = nn.ModuleList([Fusion(**kw) for _ in range(members)])

    def members_forward(self, x, avail, adj, node_mask):
        if not self.sliced:
            return [m(x, avail, adj, node_mask) for m in self.members]
        dm = self.d_member
        return [m(x[..., j * dm:(j + 1) * dm], avail, adj, node_mask)
                for j, m in enumerate(self.members)]

    def forward(self, x, avail, adj, node_mask):
        outs = self.members_forward(x, avail, adj, node_mask)
        k = float(len(outs))
        reg = None if outs[0][1] is None else sum(o[1] for o in outs) / k
        return sum(o[0] for o in outs) / k, reg


class ConversationPrior(nn.Module):
    """Last step of the fusion part: each utterance's logits gain `gain` times the mean
    squashed evidence of the other valid utterances of its window (label propagation over the
    complete conversation graph). K = 2: tanh(z_k / temp) with z = logit_1 - logit_0, added to
    the logit difference (split [-1/2, +1/2]); K > 2: softmax(logits_k / temp) - 1/K, added to
    every logit (for K = 2 that form is the binary one at temp / 2). The reg output passes
    through. gain = 0 is the identity (training runs with it); gain and temp are chosen after
    training on val/ (gsdnet_torch.train `select_prior`): the training videos cannot set them,
    since text and visual leak the labels there, so every utterance looks certain on its own,
    and their sentiment is less uniform within a video than that of unseen ones (docs/MODEL.md
    item 12)."""

    def __init__(self, n_classes: int = 2):
        super().__init__()
        self.n_classes = n_classes
        self.register_buffer("gain", torch.zeros(()))
        self.register_buffer("temp", torch.ones(()))
        self.register_buffer("split", torch.tensor([-0.5, 0.5]), persistent=False)

    def forward(self, logits, reg, node_mask):
        mask = node_mask[:, :, None]
        if self.n_classes != 2:
            e = (torch.softmax(logits / self.temp, dim=-1) - 1.0 / self.n_classes) * mask
        else:
            z = logits[..., 1:2] - logits[..., 0:1]                              # [B,W,1]
            e = torch.tanh(z / self.temp) * mask
        others = torch.clamp(node_mask.sum(dim=1, keepdim=True)[:, :, None] - 1.0, min=1.0)
        ctx = (e.sum(dim=1, keepdim=True) - e) / others * mask                  # [B,W,1 or K]
        if self.n_classes != 2:
            return logits + self.gain * ctx, reg
        return logits + (self.gain * ctx) * self.split, reg     # logit_1 - logit_0 += gain ctx


def spectrum(h: torch.Tensor, u: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """lam [B,M,k] = |hn^T u_j|^2 / max(N,1); mirrors gsdnet_ref.graph.spectrum."""
    norms = torch.clamp(torch.linalg.vector_norm(h, dim=-1, keepdim=True), min=1e-6)
    hn = h / norms * node_mask[:, None, :, None]
    proj = u.transpose(1, 2)[:, None] @ hn                                # [B,M,k,d]
    n = torch.clamp(node_mask.sum(dim=1), min=1.0)
    return (proj ** 2).sum(-1) / n[:, None, None]


def adj_from_lam(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """u diag(lam) u^T: u [B,W,k], lam [B,M,k] -> [B,M,W,W]."""
    return (u[:, None] * lam[:, :, None, :]) @ u.transpose(1, 2)[:, None]


class AdjScore(nn.Module):
    """Per-entry score of C_t given the observed similarity and both endpoints' availability."""

    def __init__(self, hid: int, sigma_l: float):
        super().__init__()
        self.sigma = sigma_l
        self.inp = nn.Linear(4, hid)
        self.temb = TimeEmbed(hid)
        self.out = nn.Linear(hid, 1)

    def net(self, c_t, t, c_obs, avail, nm):
        std = ve_std(t, self.sigma)
        c_in, c_skip, c_out = precond(std)
        a = avail.permute(0, 2, 1)                                         # [B,3,W]
        w = c_t.shape[-1]
        feat = torch.stack([c_t * c_in[:, None, None, None], c_obs,
                            a[..., :, None].expand(-1, -1, -1, w),
                            a[..., None, :].expand(-1, -1, w, -1)], dim=-1)
        z = torch.relu(self.inp(feat) + self.temb(t)[:, None, None, None, :])
        f = self.out(z)[..., 0]
        f = (f + f.transpose(-1, -2)) / 2.0
        e = lambda c: c[:, None, None, None]  # noqa: E731
        out = (e(c_skip) * c_t + e(c_out) * f - c_t) / e(std)
        return out * (nm[:, None, :, None] * nm[:, None, None, :]), std


class GSDNet(nn.Module):
    """Container of the five parts plus the hyper-parameters the manifest records. `dims`: the
    feature size of each modality slot (canonical order; `modalities` their names), `n_classes`
    K, `regression` whether the fusion has a regression head (continuous labels only)."""

    def __init__(self, d=32, k=16, width=64, hid=64, sigma_x=25.0, sigma_l=2.0, dropout=0.5,
                 variant="gsdnet", fusion_layers=2, in_dropout=0.2, cmp_zero=False,
                 fusion_members=1, fusion_ctx="mean", enc_hidden=0, dims=MOSI_DIMS,
                 modalities=("text", "audio", "visual"), n_classes=2, regression=True,
                 members=1, nb_means=False):
        super().__init__()
        dims, modalities = tuple(dims), tuple(modalities)
        if len(dims) != len(modalities) or len(dims) < 2:
            raise ValueError(f"dims {dims} and modalities {modalities}: need M >= 2 of each")
        self.cfg = dict(d=d, k=k, width=width, hid=hid, sigma_x=sigma_x, sigma_l=sigma_l,
                        dropout=dropout, variant=variant,
                        fusion_layers=fusion_layers, in_dropout=in_dropout, cmp_zero=cmp_zero,
                        fusion_members=fusion_members, fusion_ctx=fusion_ctx, dims=dims,
                        enc_hidden=enc_hidden,
                        modalities=modalities, n_classes=n_classes, regression=regression)
        if nb_means:   # only when on, so earlier checkpoints' cfg stays as it was
            self.cfg["nb_means"] = True
        if members > 1:   # K merged models (gsdnet_torch.members); d and enc_hidden are totals
            if fusion_members != 1 or d % members or enc_hidden % members:
                raise ValueError(f"members {members}: needs fusion_members 1 and d, enc_hidden "
                                 f"divisible by it (d {d}, enc_hidden {enc_hidden})")
            self.cfg["members"] = members
        m = len(dims)
        self.encoders = Encoders(d, width, dims, hidden=enc_hidden)
        self.s_theta = STheta(d, hid, sigma_x, m=m)
        self.s_phi = SPhi(d, k, hid, sigma_l, m=m)
        self.recon = Recon(d, dims)
        fkw = dict(d=d, hid=hid, layers=fusion_layers, dropout=dropout, in_dropout=in_dropout,
                   cmp_zero=cmp_zero, ctx=fusion_ctx, m=m, n_classes=n_classes,
                   regression=regression, nb_means=nb_means)
        # one member keeps the single-Fusion parameter names of earlier checkpoints
        if members > 1:
            self.fusion = FusionEnsemble(members, sliced=True, **fkw)
        elif fusion_members == 1:
            self.fusion = Fusion(**fkw)
        else:
            self.fusion = FusionEnsemble(fusion_members, **fkw)
        self.prior = ConversationPrior(n_classes)
        if variant == "adj":
            self.s_adj = AdjScore(hid // 2, sigma_l)

    def fuse(self, x, avail, adj, node_mask):
        """The deployed fusion part (fusion.onnx): the fusion network, then the conversation
        prior. Training calls `self.fusion` directly (the prior's gain is 0 until selection)."""
        logits, reg = self.fusion(x, avail, adj, node_mask)
        return self.prior(logits, reg, node_mask)
