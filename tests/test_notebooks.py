"""The example notebooks run from top to bottom in a fresh kernel of this interpreter, and say what
their text claims (the kinds, the ranks, the HTML report inline)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import lossgeom

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbclient)")
pytest.importorskip("ipykernel", reason="pip install -e '.[test]' (ipykernel)")

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
NOTEBOOKS = sorted(p.name for p in FOLDER.glob("*.ipynb"))
KERNEL = "lossgeom-tests"


@pytest.fixture(scope="module")
def jupyter_home(tmp_path_factory):
    """A kernelspec that starts *this* interpreter with *this* lossgeom on its path.

    ``python -m pytest`` from the project's virtualenv then runs the notebooks in that virtualenv,
    whatever other Python kernels the machine has registered.
    """
    home = tmp_path_factory.mktemp("jupyter")
    spec = home / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    src = str(Path(lossgeom.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lossgeom tests", "language": "python",
        "env": {"PYTHONPATH": path, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"}}))
    return home


def _run(name: str, home: Path, cwd: Path, monkeypatch) -> dict:
    monkeypatch.setenv("JUPYTER_PATH", str(home / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(home / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(home / "ipython"))
    nb = nbformat.read(FOLDER / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=180,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return {
        "stdout": "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout"),
        "html": [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})],
        "png": [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})],
        "plain": [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})],
    }


def test_every_notebook_is_tested_and_stored_without_outputs():
    assert NOTEBOOKS == ["cnn_digits.ipynb", "sweep_widths.ipynb", "transformer.ipynb"]
    for name in NOTEBOOKS:
        nb = nbformat.read(FOLDER / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name


def test_cnn_digits(jupyter_home, tmp_path, monkeypatch):
    out = _run("cnn_digits.ipynb", jupyter_home, tmp_path, monkeypatch)
    # an exact MSE fit of 24 one-hot digits: rank J = n·k = 96, rank ∇²L = rank J (§6.1)
    assert "global_minimum | rank J = 96 of n·k = 96" in out["stdout"]
    assert "inertia (+, −, 0) = [96, 0, 146] | decided: True" in out["stdout"]
    (page,) = [h for h in out["html"] if "lossgeom-page" in h]
    # spectrum, the cut of J and the (exact) degeneracy profile
    assert page.startswith('<div class="lossgeom-page">') and page.count("data:image/png;base64,") == 3
    written = (tmp_path / "cnn_digits_report.html").read_text(encoding="utf-8")
    assert written.startswith("<!DOCTYPE html>") and "global_minimum" in written


def test_transformer(jupyter_home, tmp_path, monkeypatch):
    out = _run("transformer.ipynb", jupyter_home, tmp_path, monkeypatch)
    lines = out["stdout"].splitlines()
    start = next(x for x in lines if x.startswith("noncritical"))
    pos, neg, _ = json.loads(start.split("inertia (+, −, 0) = ")[1])
    assert pos > 0 and neg > 0  # the notebook says the Hessian at θ₀ has both signs
    fit = next(x for x in lines if x.startswith("global_minimum"))
    assert "rank J = 18 | rank ∇²L = 18" in fit and "[18, 0, 705]" in fit
    assert "float64 on a copy" in out["stdout"]
    assert any("lossgeom-page" in h for h in out["html"])


def test_sweep_widths(jupyter_home, tmp_path, monkeypatch):
    out = _run("sweep_widths.ipynb", jupyter_home, tmp_path, monkeypatch)
    assert "(12, 0)" in out["plain"]  # every run of the grid fitted and stored as done
    tables = [h for h in out["html"] if "dataframe" in h]
    assert len(tables) == 2 and "zero_eigenvalues" in tables[1] and "3,10,1" in tables[1]
    assert len(out["png"]) == 1
