"""The GitHub Pages workflow (.github/workflows/book.yml) is valid YAML, runs the README's book command,
uses only targets the Makefile defines, and publishes the folder that `make book` writes."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "book.yml is not a YAML mapping"
    if True in data:                      # YAML 1.1 reads the key `on` as the boolean True
        data["on"] = data.pop(True)
    return data


def _steps(data: dict) -> list[dict]:
    return [s for job in data["jobs"].values() for s in job.get("steps", [])]


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))


def _make_calls(data: dict) -> list[str]:
    "The targets of every `make` command the workflow runs (a command: at a line's start or after && ; ||)."
    runs = "\n".join(s.get("run", "") for s in _steps(data))
    return re.findall(r"(?:^|&&|;|\|\|)\s*make\s+([A-Za-z][\w.-]*)", runs, re.M)


def test_workflow_is_valid_yaml_with_jobs_and_steps():
    data = _workflow()
    assert data.get("name") and data.get("on") and data.get("jobs"), sorted(data)
    assert "push" in data["on"], data["on"]
    for name, job in data["jobs"].items():
        assert "runs-on" in job and job.get("steps"), f"job {name} has no runner or no steps"
        for step in job["steps"]:
            assert "uses" in step or "run" in step, f"job {name}: a step neither uses an action nor runs a command: {step}"


def test_workflow_runs_the_readme_book_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1]
    book = re.search(r"^(make \w+)\s+#.*build the site", quick_start, re.M)
    assert book, "the README's quick start no longer shows the book command"
    runs = [s.get("run", "").strip() for s in _steps(_workflow())]
    assert book.group(1) in runs, f"the workflow does not run {book.group(1)!r}: {runs}"


def test_workflow_calls_only_makefile_targets():
    calls, targets = _make_calls(_workflow()), _make_targets()
    assert calls, "the workflow calls no make target"
    missing = [c for c in calls if c not in targets]
    assert not missing, f"the workflow calls make targets the Makefile lacks: {missing} (has {sorted(targets)})"


def test_workflow_publishes_what_make_book_builds():
    data = _workflow()
    uploads = [s for s in _steps(data) if "upload-pages-artifact" in s.get("uses", "")]
    assert len(uploads) == 1, "the workflow must upload one Pages artifact"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    book = re.search(r"^book:.*?(?=^\S)", makefile, re.M | re.S).group(0)
    builds = [line for line in book.splitlines() if "jupyter-book build ." in line]
    assert builds and "--path-output" not in builds[0], "make book no longer builds the English site into _build/html"
    # The Chinese edition is built second and copied into the English site, so one artifact publishes both.
    assert any("--config .zh_config.yml" in line for line in builds[1:]), book
    assert re.search(r"cp -r \S+ _build/html/zh_CN", book), book
    assert uploads[0]["with"]["path"] == "_build/html"
    deploys = [s for s in _steps(data) if "deploy-pages" in s.get("uses", "")]
    assert deploys, "the workflow never deploys to GitHub Pages"
    assert {"pages", "id-token"} <= set(data["permissions"]), data.get("permissions")
