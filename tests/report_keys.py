"""Nested key paths of every report type's to_dict(), on small seeded cases (the JSON contract)."""
import json
import sys

import torch

import lossgeom as lg

F64 = torch.float64


def paths(obj, prefix=""):
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            out.add(p)
            out |= paths(v, p)
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        for item in obj:
            out |= paths(item, prefix + "[]")
    return out


def samples():
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 1, generator=g, dtype=F64)
    p = lg.Problem(lg.mlp([3, 6, 1], generator=g), X, Y)
    fit = lg.fit_last_layer(p)
    yield "Report", lg.analyze(p, fit)
    yield "Report(lanczos)", lg.analyze(p, p.theta, dense_max_n=1)
    yield "InfoLossReport", lg.information_loss(p, fit)
    yield "SolutionManifold", lg.loci.solution_manifold(p, fit)
    yield "ManifoldWalk", lg.manifold.walk(p, fit, steps=2, inertia_every=1)
    deep = lg.Problem(lg.mlp([3, 4, 5, 1], generator=g), X, Y)
    star = lg.loci.star_point(deep, 1, rng=0)
    yield "LocusReport", lg.loci.locate(deep, star)
    yield "SliceReport", lg.loci.last_layer_slice(deep, star)
    yield "WideZeroBound", lg.loci.wide_zero_bound(deep, star)
    soft = torch.softmax(torch.randn(4, 2, generator=g, dtype=F64), 1)
    sm = lg.Problem(lg.mlp([3, 6, 2], generator=g), X, soft)
    yield "OutputVelocity", lg.flows.output_velocity(sm, None, 0.5)
    traj = lg.flows.integrate(p, p.theta, alpha=1.0, t_end=0.5, method="rk4", step=0.05, n_eval=3)
    yield "Trajectory", traj


if __name__ == "__main__":  # regenerate a snapshot: python tests/report_keys.py > tests/data/....json
    out = {name: sorted(paths(obj.to_dict())) for name, obj in samples()}
    json.dump(out, sys.stdout, indent=1)
