"""The README's Python example runs, and its glossary names every Report key."""

import re
from pathlib import Path

import lossgeom as lg

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md", "exec"), {})


def test_glossary_names_every_report_key():
    import torch

    X = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    problem = lg.Problem(torch.nn.Linear(2, 1, bias=False).double(), X, torch.zeros(2, 1))
    keys = lg.analyze(problem).to_dict().keys()
    glossary = README.split("## Report fields", 1)[1].split("\n## ", 1)[0]
    missing = [k for k in keys if f"`{k}`" not in glossary]
    assert not missing, f"README glossary lacks {missing}"


def test_readme_names_the_two_commands():
    assert "make demo" in README and "make test" in README
