"""The README's Python snippets run exactly as printed, on the demo run: they run in an empty
folder where runs/nlst, the run directory they name, is a link to the demo run."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
NAMED_RUN = "runs/nlst"


def snippets() -> list[str]:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_readme_has_its_snippets():
    found = snippets()
    assert len(found) >= 3, f"README.md has {len(found)} python blocks, want the pyarrow, polars and DuckDB ones"
    for s in found:
        assert NAMED_RUN in s, f"a README snippet does not name {NAMED_RUN}:\n{s}"


@pytest.mark.parametrize("index", range(len(snippets())))
def test_readme_snippet_runs_on_the_demo_run(index, run_dir, tmp_path, monkeypatch, capsys):
    code = snippets()[index]
    os.makedirs(tmp_path / os.path.dirname(NAMED_RUN))
    os.symlink(run_dir, tmp_path / NAMED_RUN)
    monkeypatch.chdir(tmp_path)  # nothing else may depend on the working directory
    ns: dict = {}
    exec(compile(code, f"README.md python block {index + 1}", "exec"), ns)
    out = capsys.readouterr().out
    frames = {k: v for k, v in ns.items() if hasattr(v, "shape") and not k.startswith("_")}
    for name, v in frames.items():
        assert v.shape[0] > 0, f"block {index + 1}: {name} is empty"
    assert frames or out.strip(), f"block {index + 1} made nothing to look at"
    print(f"block {index + 1}: {', '.join(f'{k} {tuple(v.shape)}' for k, v in frames.items()) or out.strip()[:200]}")
