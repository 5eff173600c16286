"""Read a TensorBoard log directory back as TensorBoard shows its scalars, without the tensorboard package.

The event files are read in name order (the order TensorBoard reads them), record by record, with tensorboardX's
own protobufs. Like TensorBoard's EventAccumulator for files of version ``brain.Event:2`` (which tensorboardX
writes), a ``SessionLog.START`` event at step ``s`` discards every scalar read so far with step >= ``s``; values
that no purge discarded are all kept, so a step logged twice shows two values.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event, SessionLog


def read_events(path: Path):
    """The events of one file: TFRecord framing (length, length CRC, data, data CRC); CRCs are not checked."""
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        start = offset + 12
        if start + length + 4 > len(data):
            return  # a torn last record
        event = Event()
        event.ParseFromString(data[start:start + length])
        yield event
        offset = start + length + 4


def displayed_scalars(log_dir: Path) -> dict[str, dict[int, list[float]]]:
    """``{tag: {step: [values]}}`` left after the purges; a step with one value is displayed without doubt."""
    scalars: dict[str, dict[int, list[float]]] = {}
    for path in sorted(log_dir.glob("*tfevents*")):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for steps in scalars.values():
                    for step in [step for step in steps if step >= event.step]:
                        del steps[step]
            for value in event.summary.value:
                scalars.setdefault(value.tag, {}).setdefault(event.step, []).append(value.simple_value)
    return scalars
