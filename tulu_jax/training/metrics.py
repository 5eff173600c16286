"""Where training metrics go: stdout, a JSONL file, TensorBoard (tensorboardX), and W&B when asked for.

Only process 0 writes; on the other processes every method is a no-op.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import numpy as np

from data_pipeline.paths import as_path, is_remote
from tulu_jax.errors import ConfigError

# How often a remote metrics.jsonl is uploaded again (besides at rewind and close).
REMOTE_UPLOAD_SECONDS = 30.0


def _plain(value: Any) -> Any:
    """A JSON-able scalar: integers stay integers, array scalars become floats."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class _RemoteJsonl:
    """``metrics.jsonl`` in an object store (gs://…), where an object cannot be appended to (gcsfs opens ``"a"``
    as ``"w"``, which would erase the lines of the run being resumed) and nothing is visible before the upload.

    It holds the whole file: the object's lines at opening, then what is written; ``flush`` uploads it again
    when ``REMOTE_UPLOAD_SECONDS`` have passed since the last upload, ``flush(force=True)`` and ``close`` always.
    An upload replaces the object whole, so a reader never sees a torn file.
    """

    def __init__(self, path):
        self._path = path
        self._text = path.read_text(encoding="utf-8") if path.exists() else ""
        self._uploaded = -math.inf

    def write(self, text: str) -> None:
        self._text += text

    def flush(self, force: bool = False) -> None:
        if force or time.monotonic() - self._uploaded >= REMOTE_UPLOAD_SECONDS:
            self._path.write_text(self._text, encoding="utf-8")
            self._uploaded = time.monotonic()

    def close(self) -> None:
        self.flush(force=True)


class MetricsLogger:
    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True, wandb_project: Optional[str] = None,
                 run_config: Optional[dict] = None, stdout=sys.stdout):
        self.enabled = jax.process_index() == 0
        self.stdout = stdout
        self._jsonl = self._tensorboard = self._wandb = None
        if not self.enabled:
            return
        output_dir = as_path(output_dir)
        if output_dir.exists() and not output_dir.is_dir():
            raise ConfigError(f"output_dir {output_dir} is a file, not a directory; choose another output_dir")
        output_dir.mkdir(parents=True, exist_ok=True)
        self._path = output_dir / "metrics.jsonl"
        self._jsonl = self._open_jsonl()
        # Each start (a resume too) opens with where the run ran: a line without a step.
        self._jsonl.write(json.dumps({"process_count": jax.process_count(), "device_count": jax.device_count(),
                                      "local_device_count": jax.local_device_count()}) + "\n")
        self._jsonl.flush()
        if tensorboard:
            from tensorboardX import SummaryWriter

            # tensorboardX names an event file by the second it was opened and truncates an existing one: a
            # nanosecond suffix keeps a resume within the same second from erasing the earlier run's file, and
            # keeps the files in the order they were written (the order TensorBoard reads them in).
            self._tensorboard = SummaryWriter(str(output_dir / "tensorboard"), filename_suffix=f".{time.time_ns()}")
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError(
                    f"logging.wandb_project={wandb_project!r} but wandb is not installed; "
                    "`pip install wandb` or leave wandb_project empty"
                ) from None
            self._wandb = wandb.init(project=wandb_project, config=run_config, dir=str(output_dir))

    def rewind(self, step: int) -> int:
        """Drop the metrics.jsonl lines of steps after ``step`` (and a torn last line); returns how many.

        A resumed run replays the steps after its checkpoint and logs them again; without this they would
        appear twice. The file is rewritten beside itself and renamed, so a kill here loses nothing.
        TensorBoard's event files are append-only; instead they get a ``SessionLog.START`` at ``step + 1``
        (tensorboardX's ``purge_step``), on which TensorBoard discards the earlier events of steps after ``step``.
        """
        if not self.enabled:
            return 0
        if self._tensorboard is not None:
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            start = Event(step=step + 1, session_log=SessionLog(status=SessionLog.START))
            self._tensorboard.file_writer.add_event(start)
        self.sync()
        kept, dropped = [], 0
        for line in self._path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                keep = isinstance(record, dict) and int(record.get("step", 0)) <= step
            except (ValueError, TypeError):
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            self._jsonl.close()
            temporary = self._path.with_name(self._path.name + ".tmp")
            temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            temporary.replace(self._path)
            self._jsonl = self._open_jsonl()
        return dropped

    def sync(self) -> None:
        """Put every line logged so far on storage. The loop calls it before each checkpoint save, so a resume
        from that checkpoint finds the lines of its steps (a remote file is otherwise uploaded at most every
        ``REMOTE_UPLOAD_SECONDS``)."""
        if not self.enabled:
            return
        if isinstance(self._jsonl, _RemoteJsonl):
            self._jsonl.flush(force=True)
        else:
            self._jsonl.flush()

    def _open_jsonl(self):
        return _RemoteJsonl(self._path) if is_remote(self._path) else self._path.open("a")

    def log(self, step: int, metrics: Mapping[str, Any], echo: bool = True) -> None:
        if not self.enabled:
            return
        values = {key: _plain(value) for key, value in metrics.items()}
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        if echo:
            self.write(f"step {step}: " + "  ".join(f"{key} {_format(value)}" for key, value in values.items()))

    def write(self, line: str) -> None:
        """A line on stdout that does not break the progress bar."""
        if not self.enabled:
            return
        from tqdm import tqdm

        tqdm.write(line, file=self.stdout)

    def close(self) -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
