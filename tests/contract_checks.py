"""Shared contract check: a public call leaves the model as it was and returns a proper result."""

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator


def snapshot(model):
    """State dict, requires_grad flags, .grad and training flag of a module."""
    return (copy.deepcopy(model.state_dict()), [q.requires_grad for q in model.parameters()],
            [q.grad for q in model.parameters()], model.training)


def check_call(problem, call):
    """Run ``call(problem, problem.theta)``; the model is untouched and the result well-formed."""
    before = snapshot(problem.model)
    result = call(problem, problem.theta)
    after = snapshot(problem.model)
    for a, b in zip(before[0].values(), after[0].values(), strict=True):
        assert torch.equal(a, b)
    assert before[1:] == after[1:]
    if isinstance(result, torch.Tensor):
        assert result.dtype == torch.float64
    elif isinstance(result, LinearOperator):
        assert result.dtype == np.float64
    elif dataclasses.is_dataclass(result):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, dataclasses.fields(result)[0].name, None)
        json.dumps(result.to_dict())
    return result
