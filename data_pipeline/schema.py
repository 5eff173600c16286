"""Check SFT, preference and RLVR records, and apply the invalid-record policy (error or skip-and-count)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Collection, Iterable, Iterator, Mapping, Optional

from data_pipeline.errors import DataError
from data_pipeline.sources import Record

ROLES = ("system", "user", "assistant")


class InvalidRecord(ValueError):
    """A record breaks the schema; ``reason`` is a short key used to count skips."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class DropCounter:
    """Counts of records or examples left out, by reason, so nothing disappears silently."""

    def __init__(self):
        self.counts: Counter[str] = Counter()

    def add(self, reason: str, amount: int = 1) -> None:
        self.counts[reason] += amount

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self, what: str) -> str:
        if not self.counts:
            return f"{what}: none dropped"
        details = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.counts.items()))
        return f"{what}: {self.total} dropped ({details})"


def infer_kind(data: dict[str, Any]) -> str:
    """The record kind implied by its keys: preference (chosen/rejected), rlvr (ground_truth) or sft."""
    if "chosen" in data or "rejected" in data:
        return "preference"
    if "ground_truth" in data:
        return "rlvr"
    return "sft"


def _as_message_list(value: Any, field: str) -> list[Any]:
    # TFDS and some Arrow writers store a list of messages as columns: {"role": [...], "content": [...]}.
    if isinstance(value, dict) and set(value) >= {"role", "content"} and isinstance(value["role"], list):
        return [{"role": role, "content": content} for role, content in zip(value["role"], value["content"])]
    if not isinstance(value, list):
        raise InvalidRecord(f"{field}_not_a_list", f"'{field}' must be a list of messages, got {type(value).__name__}")
    return value


def check_messages(value: Any, field: str = "messages") -> list[dict[str, str]]:
    """Return the messages as ``[{"role", "content"}]`` or raise InvalidRecord saying which message is wrong."""
    messages = _as_message_list(value, field)
    if not messages:
        raise InvalidRecord("empty_messages", f"'{field}' is empty")
    cleaned = []
    where = "message" if field == "messages" else f"{field} message"  # "message 2", "rejected message 2"
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise InvalidRecord("bad_message", f"{where} {number} is not an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidRecord(
                "bad_role", f"{where} {number} has role {role!r}; roles must be system, user or assistant"
            )
        if not isinstance(content, str):
            raise InvalidRecord(
                "bad_content", f"{where} {number} ({role}) has content of type {type(content).__name__}; "
                "content must be a string"
            )
        if not content.strip():
            raise InvalidRecord("empty_content", f"{where} {number} ({role}) has empty content")
        cleaned.append({"role": role, "content": content})
    return cleaned


def _require(data: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise InvalidRecord(
            "missing_field", f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(the record has {', '.join(map(repr, data)) or 'no fields'})"
        )


def check_sft(data: dict[str, Any]) -> dict[str, Any]:
    """An SFT record: messages with at least one assistant turn to train on."""
    _require(data, "messages")
    messages = check_messages(data["messages"])
    if not any(message["role"] == "assistant" for message in messages):
        raise InvalidRecord("no_assistant_turn", "no assistant message to train on")
    return {"messages": messages}


def check_preference(data: dict[str, Any]) -> dict[str, Any]:
    """A preference pair: both end with an assistant turn and share everything before it."""
    _require(data, "chosen", "rejected")
    chosen, rejected = check_messages(data["chosen"], "chosen"), check_messages(data["rejected"], "rejected")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if messages[-1]["role"] != "assistant":
            raise InvalidRecord("no_final_assistant", f"the last '{field}' message must be from the assistant")
        if len(messages) < 2:
            raise InvalidRecord("no_prompt", f"'{field}' has no prompt before the assistant reply")
    if chosen[:-1] != rejected[:-1]:
        raise InvalidRecord(
            "prompt_mismatch", "'chosen' and 'rejected' must share the same prompt (every message but the last)"
        )
    return {"chosen": chosen, "rejected": rejected}


def _check_datasets(dataset: str | list[str], ground_truth: str | list[str], known: Collection[str]) -> None:
    """Each dataset name must be ``known`` (compared as the verifier registry does: stripped, lower case).

    When ``known`` maps names to label checks (``check(ground_truth)`` raising ``ValueError``), each label is
    read by its verifier's check too, so a malformed one is found here, with its file and line."""
    if isinstance(dataset, str):  # one verifier, one label or several (e.g. several ifeval constraints)
        pairs = [(dataset, truth) for truth in (ground_truth if isinstance(ground_truth, list) else [ground_truth])]
    else:
        pairs = list(zip(dataset, ground_truth if isinstance(ground_truth, list) else [ground_truth] * len(dataset)))
    lowered = {str(name).strip().lower(): name for name in known}
    for name, truth in pairs:
        key = str(name).strip().lower()
        if key not in lowered:
            raise InvalidRecord("unknown_dataset", f"dataset {name!r} names no verifier; known: {', '.join(sorted(known))}")
        check = known.get(lowered[key]) if isinstance(known, Mapping) else None
        if check is not None:
            try:
                check(truth)
            except ValueError as error:
                raise InvalidRecord("bad_ground_truth", f"ground_truth for {name!r}: {error}") from None


def _check_labels(value: Any, field: str) -> str | list[str]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) and item.strip() for item in value):
        return value
    raise InvalidRecord(f"bad_{field}", f"'{field}' must be a non-empty string or list of strings, got {value!r}")


def check_rlvr(data: dict[str, Any]) -> dict[str, Any]:
    """An RLVR prompt: messages ending with a user turn, plus ``ground_truth`` and the verifier ``dataset``."""
    _require(data, "messages", "ground_truth", "dataset")
    messages = check_messages(data["messages"])
    if messages[-1]["role"] != "user":
        raise InvalidRecord("prompt_not_ending_with_user", "the last prompt message must be from the user")
    ground_truth, dataset = _check_labels(data["ground_truth"], "ground_truth"), _check_labels(data["dataset"], "dataset")
    if isinstance(ground_truth, list) and isinstance(dataset, list) and len(ground_truth) != len(dataset):
        raise InvalidRecord("label_length_mismatch", "'ground_truth' and 'dataset' lists differ in length")
    return {"messages": messages, "ground_truth": ground_truth, "dataset": dataset}


KIND_NAMES = {"sft": "an SFT", "preference": "a preference", "rlvr": "an RLVR"}
CHECKS = {"sft": check_sft, "preference": check_preference, "rlvr": check_rlvr}


def validate_records(
    records: Iterable[Record], kind: str, policy: str, dropped: DropCounter,
    known_datasets: Optional[Collection[str]] = None,
) -> Iterator[Record]:
    """Yield checked records of ``kind``; on a bad one raise DataError (``error``) or count it (``skip``).

    ``known_datasets``: for RLVR records, the verifier names that exist (a record naming another is invalid,
    found here with its file and line rather than at a rollout step)."""
    check = CHECKS[kind]
    for record in records:
        try:
            checked = check(record.data)
            if kind == "rlvr" and known_datasets is not None:
                _check_datasets(checked["dataset"], checked["ground_truth"], known_datasets)
            yield Record(checked, record.origin)
        except InvalidRecord as problem:
            if policy == "error":
                raise DataError(
                    f"{record.origin}: {problem} ({KIND_NAMES[kind]} record; set data.invalid_records=skip to drop "
                    "such records and count them instead)"
                ) from None
            dropped.add(problem.reason)
