"""Export the five GSDNet parts to ONNX (opset 17, batch 1, fixed W) and write manifest.toml.

Owns: the I/O names and shapes of docs/DESIGN.md "ONNX parts" for the model's M modalities
(inputs / outputs named after them, slot order canonical) and K classes (`reg` only with a
regression head), the op allow-list check (plain ops that both onnxruntime and tract run), and
the manifest writer (hand-written TOML; `[modalities]` holds the feature sizes, `[dims]` only
window / latent / k, `[normalisation]` the present modalities).
    python3 scripts/export.py CHECKPOINT.pt models/gsdnet-mosi
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import onnx
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gsdnet_torch.model import GSDNet  # noqa: E402
from gsdnet_torch.selection import sel_rates  # noqa: E402
from gsdnet_ref.tomlw import write_toml  # noqa: E402,F401  (make_golden.py and tests import it from here too)

OPSET = 17
ALLOWED_OPS = {
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "Tanh", "Sigmoid", "Softmax", "Exp",
    "Log", "Sin", "Cos", "Sqrt", "Concat", "Reshape", "Transpose", "Unsqueeze", "Squeeze",
    "ReduceSum", "ReduceMean", "Constant", "Gather", "Slice", "Max", "Clip", "Identity", "Split",
}


class _Part(nn.Module):
    """Batch-1 wrapper fixing argument order; `fn` maps the named inputs to the outputs."""

    def __init__(self, fn, owner):
        super().__init__()
        self.owner, self.fn = owner, fn

    def forward(self, *xs):
        return self.fn(*xs)


def model_modalities(cfg: dict) -> list:
    """[(name, size)] of the model's modality slots (defaults: CMU-MOSI's three)."""
    names = cfg.get("modalities", ("text", "audio", "visual"))
    return list(zip(names, cfg.get("dims", (100, 73, 100))))


def part_specs(model: GSDNet):
    c = model.cfg
    w, d, k = c["width"], c["d"], c["k"]
    mods = model_modalities(c)
    m, n_cls = len(mods), c.get("n_classes", 2)
    enc = model.encoders
    feats = [(name, [1, w, size]) for name, size in mods]
    fusion_out = [("logits", [1, w, n_cls])]
    if c.get("regression", True):
        fusion = (lambda *a: model.fuse(*a), model)
        fusion_out.append(("reg", [1, w, 1]))
    else:
        fusion = (lambda *a: model.fuse(*a)[0], model)
    return {
        "encoders": (lambda *xs: enc(*xs), enc, feats, [("h", [1, m, w, d])]),
        "s_theta": (lambda *a: model.s_theta(*a), model.s_theta,
                    [("x_t", [1, m, w, d]), ("t", [1]), ("cond", [1, m, w, d]),
                     ("avail", [1, w, m]), ("adj_t", [1, m, w, w]), ("node_mask", [1, w])],
                    [("score", [1, m, w, d])]),
        "s_phi": (lambda *a: model.s_phi(*a), model.s_phi,
                  [("lam_t", [1, m, k]), ("t", [1]), ("lam_obs", [1, m, k]), ("u", [1, w, k]),
                   ("cond", [1, m, w, d]), ("avail", [1, w, m]), ("node_mask", [1, w])],
                  [("score", [1, m, k])]),
        "recon": (lambda x: model.recon(x), model.recon, [("x", [1, m, w, d])], feats),
        "fusion": fusion + ([("x", [1, m, w, d]), ("avail", [1, w, m]), ("adj", [1, 2, w, w]),
                             ("node_mask", [1, w])], fusion_out),
    }


def _example(shape):
    return torch.rand(*shape) * 0.5 + 0.25 if shape != [1] else torch.tensor([0.5])


def export_part(name, spec, folder: Path) -> Path:
    fn, owner, ins, outs = spec
    path = folder / f"{name}.onnx"
    args = tuple(_example(s) for _, s in ins)
    torch.onnx.export(_Part(fn, owner).eval(), args, str(path), opset_version=OPSET,
                      input_names=[n for n, _ in ins], output_names=[n for n, _ in outs],
                      dynamo=False, do_constant_folding=True)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    got_in = [i.name for i in m.graph.input]
    if got_in != [n for n, _ in ins]:
        raise RuntimeError(f"{name}: inputs {got_in}, expected {[n for n, _ in ins]}")
    bad = {n.op_type for n in m.graph.node} - ALLOWED_OPS
    if bad:
        raise RuntimeError(f"{name}: ops outside the allow-list: {sorted(bad)}")
    return path


def onnx_val_metrics(folder: Path, val_dir: Path) -> dict:
    """Val accuracy (acc2 for a binary label with regression) / weighted F1 / MAE (regression
    only) of the exported parts through the ONNX reference (gsdnet completion, mask seeds 0-2,
    DESIGN.md noise keys): the numbers `gsdnet eval` must reproduce."""
    from gsdnet_ref.evaluate import evaluate
    res = evaluate(folder, val_dir, completions=("gsdnet",))
    out = {"protocol": "gsdnet_ref.evaluate, completion gsdnet, mask seeds 0-2, split val"}
    for r in res["results"]:
        tag = f"rate_{r['missing_rate']:.1f}".replace(".", "_") if r["pattern"] is None \
            else f"pattern_{r['pattern']}"
        if "acc2" in r:
            out[f"val_acc2_{tag}"] = round(r["acc2"], 4)
        else:
            out[f"val_acc_{tag}"] = round(r["accuracy"], 4)
        out[f"val_f1_{tag}"] = round(r["f1_weighted"], 4)
        if "mae" in r:
            out[f"val_mae_{tag}"] = round(r["mae"], 4)
    return out


# The deployed integrator: the fewest PF-ODE Heun steps within 0.5 points of 100 Euler-Maruyama
# steps on val/ at rates 0.3 and 0.7 on the model before the conversation prior; with the prior no
# Heun row meets that rule, which sits at the comparison's noise floor (scripts/sampler_table.py,
# docs/RESULTS.md "Sampler"). Training's own
# --steps (the torch EM sampler the fusion is fine-tuned on) is recorded in [training].
DEPLOY_SAMPLER, DEPLOY_STEPS = "pf_ode_heun_inpaint", 3


def export_model(model: GSDNet, info: dict, folder: Path, argv) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    specs = part_specs(model)
    a, c = info["args"], model.cfg
    tables = {
        "model": dict(name=folder.name, version="0.1.0",
                      classes=list(info.get("classes", ["negative", "positive"])),
                      has_regression=bool(c.get("regression", True))),
        "modalities": dict(model_modalities(c)),
        "dims": dict(window=c["width"], latent=c["d"], k=c["k"]),
        "graph": dict(window_same=a["window_same"], window_other=a["window_other"]),
        "sde": dict(sigma_x=c["sigma_x"], sigma_lambda=c["sigma_l"], eps=a["eps"],
                    steps=DEPLOY_STEPS, sampler=DEPLOY_SAMPLER),
        "normalisation": {},
    }
    for m, (mean, std) in info["stats"].items():
        tables["normalisation"][f"{m}_mean"] = [float(x) for x in mean]
        tables["normalisation"][f"{m}_std"] = [float(x) for x in std]
    with torch.no_grad():
        for name, spec in specs.items():
            path = export_part(name, spec, folder)
            tables[f"parts.{name}"] = dict(
                file=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                inputs=[dict(name=n, shape=s) for n, s in spec[2]],
                outputs=[dict(name=n, shape=s) for n, s in spec[3]])
    tables["training"] = dict(command="python3 scripts/train.py " + " ".join(argv),
                              seed=a["seed"], epochs=a["epochs"], ft_epochs=a["ft_epochs"],
                              best_epoch=info["best_epoch"],
                              ft_best_epoch=-1 if info["ft_best_epoch"] is None
                              else info["ft_best_epoch"],
                              fine_tune_sampler="euler_maruyama_inpaint",
                              fine_tune_steps=a["steps"],
                              data_sha256=info["data_sha256"])
    if info.get("prior"):   # the conversation prior inside fusion.onnx, chosen on val
        tables["training"].update(prior_gain=info["prior"]["gain"],
                                  prior_temp=info["prior"]["temp"])
    if info.get("layout", "cmu-mosi") != "cmu-mosi":   # CMU-MOSI's table stays as it was
        tables["training"].update(layout=info["layout"], selection_metric=a["sel_metric"],
                                  selection_rates=list(sel_rates(a)),
                                  prior_form="softmax" if c.get("n_classes", 2) > 2
                                  else "tanh")
    (folder / "manifest.toml").write_text(write_toml(tables))
    tables["metrics"] = onnx_val_metrics(folder, Path(a["data"]) / "val")
    (folder / "manifest.toml").write_text(write_toml(tables))
    torch.save(dict(state=model.state_dict(), cfg=model.cfg, info=info), folder / "model.pt")


def main():
    ckpt = torch.load(sys.argv[1], weights_only=False)
    model = GSDNet(**ckpt["cfg"])
    model.load_state_dict(ckpt["state"])
    export_model(model, ckpt["info"], Path(sys.argv[2]), ckpt["info"].get("argv", []))


if __name__ == "__main__":
    main()
