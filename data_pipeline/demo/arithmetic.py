"""Two-step arithmetic word problems with GSM8K-style answers (``... The answer is N.``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ("Sam", "Mia", "Leo", "Ava", "Tom", "Zoe", "Ben", "Eva", "Max", "Ivy", "Jon", "Amy")
ITEMS = ("apples", "pens", "books", "coins", "cards", "shells", "stamps", "marbles", "cups", "hats")


@dataclass(frozen=True)
class Problem:
    question: str
    worked_answer: str  # the correct response
    answer: int

    def wrong_answer(self, rng: random.Random) -> str:
        """A response in the same format whose final number is off."""
        delta = rng.choice([-2, -1, 1, 2])
        return self.worked_answer.replace(f"The answer is {self.answer}.", f"The answer is {self.answer + delta}.")


def make_problem(rng: random.Random) -> Problem:
    """``start + gained - lost``, all small, so a tiny model can learn the facts in minutes on a CPU."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start, gained = rng.randint(1, 9), rng.randint(1, 9)
    total = start + gained
    lost = rng.randint(1, total - 1)
    result = total - lost
    question = (
        f"{name} has {start} {item}. {name} gets {gained} more and then gives away {lost}. "
        f"How many {item} does {name} have now?"
    )
    worked = f"{start} + {gained} = {total}. {total} - {lost} = {result}. The answer is {result}."
    return Problem(question, worked, result)
