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

from math_cases import CASES  # noqa: E402

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


def measure(name: str, show: bool) -> dict:
    judge = VERIFIERS[name]
    false_accepts, false_rejects = [], []
    for response, label, verdict, reason in CASES:
        accepted = judge(response, label)
        if accepted and not verdict:
            false_accepts.append((response, label, reason))
        elif verdict and not accepted:
            false_rejects.append((response, label, reason))
    agreement = 1 - (len(false_accepts) + len(false_rejects)) / len(CASES)
    print(f"{name:12s} agreement {agreement:7.2%}  false accepts {len(false_accepts):3d}  "
          f"false rejects {len(false_rejects):3d}  (of {len(CASES)} cases)")
    if show:
        for kind, cases in (("FA", false_accepts), ("FR", false_rejects)):
            for response, label, reason in cases:
                print(f"    {kind} label={label!r:28s} response={response!r}  # {reason}")
    return {"agreement": agreement, "false_accepts": len(false_accepts), "false_rejects": len(false_rejects)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-disagreements", action="store_true")
    parser.add_argument("--only", choices=sorted(VERIFIERS), action="append")
    args = parser.parse_args(argv)
    for name in args.only or VERIFIERS:
        measure(name, args.show_disagreements)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
