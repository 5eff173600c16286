"""Hold a launched ``tulu-jax`` at a chosen point so a test can SIGKILL it there, deterministically.

The product is launched unchanged; a ``sitecustomize`` on its ``PYTHONPATH`` wraps one function. After the
wrapped function returns (for the ``$PAUSE_AFTER_CALLS``-th time), the process writes ``$PAUSE_MARKER`` and
sleeps, so the test sees the marker and
kills the process with the function's work done and whatever follows it not yet begun (for example: the
export's shards written into the temporary sibling, the directory not yet renamed into place).
"""

from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = '''
import importlib, os, time

_module_name, _attribute = os.environ["PAUSE_AFTER"].rsplit(".", 1)
_module = importlib.import_module(_module_name)  # imports JAX; touches no device
_original = getattr(_module, _attribute)
_calls = [0]

def _paused(*args, **kwargs):
    result = _original(*args, **kwargs)
    _calls[0] += 1
    if _calls[0] < int(os.environ.get("PAUSE_AFTER_CALLS", "1")):
        return result
    with open(os.environ["PAUSE_MARKER"], "w") as marker:
        marker.write(str(os.getpid()))
    time.sleep(3600)
    return result

setattr(_module, _attribute, _paused)
'''


def pause_environment(directory: Path, function: str, env: dict, calls: int = 1) -> tuple[dict, Path]:
    """``env`` plus a ``sitecustomize`` that pauses after the ``calls``-th call of ``function`` (``module.name``);
    returns the environment and the marker file the paused process writes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = directory / "paused"
    marker.unlink(missing_ok=True)
    paused = dict(env, PAUSE_AFTER=function, PAUSE_AFTER_CALLS=str(calls), PAUSE_MARKER=str(marker),
                  PYTHONPATH=os.pathsep.join([str(directory), env.get("PYTHONPATH", "")]))
    return paused, marker
