"""Agreement of MATH verifiers with a careful grader's verdicts on the labelled set in tests/rewards.

    python -m benchmarks.verifier_agreement [--show-disagreements]

Three verifiers judge the same (response, label) cases of ``tests/rewards/math_cases.py``:
- ``ours``: ``verify_math`` with our own parsing only (``math_verify=False``);
- ``math-verify``: HF ``math-verify`` alone, used as its README shows (``verify(parse(label), parse(response))``,
  default extraction configs) on the whole response;
- ``kept``: ``verify_math`` as shipped (our extraction and structure, ``math-verify`` as one of the element
  judges, in the time-limited worker).
Reported: agreement (fraction of cases where the verdict matches), false accepts (the grader says wrong,
the verifier accepts) and false rejects.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "rewards"))

from math_cases import CASES, HELD_OUT  # noqa: E402

from tulu_jax.rewards.math_answer import verify_math  # noqa: E402


def _math_verify_alone(response: str, label: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse("$" + label + "$"), parse(response)))
    except Exception:  # math-verify failing on a case counts as "not verified"
        return False


VERIFIERS = {
    "ours": lambda response, label: verify_math(response, label, math_verify=False) == 1.0,
    "math-verify": _math_verify_alone,
    "kept": lambda response, label: verify_math(response, label) == 1.0,
}


def measure(name: str, show: bool, cases=CASES, title: str = "") -> dict:
    judge = VERIFIERS[name]
    false_accepts, false_rejects = [], []
    for response, label, verdict, reason in cases:
        accepted = judge(response, label)
        if accepted and not verdict:
            false_accepts.append((response, label, reason))
        elif verdict and not accepted:
            false_rejects.append((response, label, reason))
    agreement = 1 - (len(false_accepts) + len(false_rejects)) / len(cases)
    print(f"{title}{name:12s} agreement {agreement:7.2%}  false accepts {len(false_accepts):3d}  "
          f"false rejects {len(false_rejects):3d}  (of {len(cases)} cases)")
    if show:
        for kind, cases in (("FA", false_accepts), ("FR", false_rejects)):
            for response, label, reason in cases:
                print(f"    {kind} label={label!r:28s} response={response!r}  # {reason}")
    return {"agreement": agreement, "false_accepts": len(false_accepts), "false_rejects": len(false_rejects)}


def cross_labels(name: str, shift: int = 37) -> None:
    """Each correct response against the label of another case (``shift`` cases on): should be rejected.

    A stand-in for "at least 99% rejected against another problem's label" (the repository holds no MATH
    gold solutions); accepted pairs are printed so a reader can tell a coincidence (``24`` and ``4!``)
    from a false accept.
    """
    judge = VERIFIERS[name]
    correct = [(response, label) for response, label, verdict, _ in CASES if verdict]
    accepted = []
    for index, (response, label) in enumerate(correct):
        other = correct[(index + shift) % len(correct)][1]
        if other != label and judge(response, other):
            accepted.append((response, label, other))
    print(f"{name:12s} cross-label pairs {len(correct)}  accepted {len(accepted)} "
          f"(rejected {1 - len(accepted) / len(correct):.2%})")
    for response, label, other in accepted:
        print(f"    accepted {response!r} (own label {label!r}) against {other!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-disagreements", action="store_true")
    parser.add_argument("--only", choices=sorted(VERIFIERS), action="append")
    parser.add_argument("--cross-labels", action="store_true", help="also score correct responses against other labels")
    args = parser.parse_args(argv)
    for name in args.only or VERIFIERS:
        measure(name, args.show_disagreements)
        if args.cross_labels:
            cross_labels(name)
    for name in args.only or VERIFIERS:
        measure(name, args.show_disagreements, HELD_OUT, "held-out ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
