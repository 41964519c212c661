"""Curvature of L(θ) = C(x(θ)): Jacobian, NTK Gram, Hessian, Gauss–Newton and residual terms."""

from ._density import hessian_spectrum, hessian_trace
from ._gauss_newton import (
    gauss_newton,
    gauss_newton_operator,
    make_gauss_newton_product,
    make_residual_product,
    residual_hessian,
    residual_operator,
)
from ._hessian import HvpMode, hessian, hessian_operator, hvp, make_hvp, make_hvp_block
from ._jacobian import jacobian, jacobian_operator, make_jvp, make_vjp, ntk_gram
from .linearization import Linearization, Route, linearize

__all__ = [
    "HvpMode", "Linearization", "Route", "gauss_newton", "gauss_newton_operator", "hessian",
    "hessian_operator", "hessian_spectrum", "hessian_trace", "hvp", "jacobian",
    "jacobian_operator", "linearize",
    "make_gauss_newton_product", "make_hvp", "make_hvp_block", "make_jvp", "make_residual_product",
    "make_vjp", "ntk_gram", "residual_hessian", "residual_operator",
]
