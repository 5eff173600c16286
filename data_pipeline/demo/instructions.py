"""Short writing prompts with IFEval-style verifiable constraints, in the Tülu ``func_name`` format."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

TOPICS = (
    "the sea", "a cat", "the moon", "a garden", "the rain", "a city", "the wind", "a river", "the sun", "a forest",
    "a dog", "the sky", "a lake", "a road", "the snow", "a bird", "a house", "the night", "a hill", "a tree",
    "a ship", "the park", "a song", "a book", "the field", "a bridge", "a horse", "the beach", "a cloud", "a town",
    "a boat", "the morning", "a fox", "a mountain", "the street", "a flower", "a train", "the winter", "a fish", "a room",
)
ADJECTIVES = ("calm", "bright", "quiet", "green", "cold", "warm", "old", "soft", "wide", "dark")
END_PHRASES = ("That is all.", "Thank you.", "The end.", "See you soon.", "Good night.", "Have a nice day.")
# Enough distinct prompts (40 topics x 4 openings x 8 constraints = 1,280) that every split gets its own.
OPENINGS = ("Write one sentence about {topic}.", "Describe {topic} in one sentence.",
            "Tell me about {topic} in one sentence.", "Say one thing about {topic}.")


@dataclass(frozen=True)
class Instruction:
    prompt: str
    ground_truth: str  # JSON for the ifeval verifier
    good_response: str
    bad_response: str  # breaks the constraint


def _sentence(rng: random.Random, topic: str) -> str:
    first, second = rng.sample(ADJECTIVES, 2)
    return f"{topic} is {first} and {second}."


def make_instruction(rng: random.Random) -> Instruction:
    topic = rng.choice(TOPICS)
    sentence = _sentence(rng, topic)
    opening = rng.choice(OPENINGS).format(topic=topic)
    kind = rng.choice(("lowercase", "uppercase", "end"))
    if kind == "lowercase":
        prompt = f"{opening} Use only lowercase letters."
        truth = {"func_name": "validate_lowercase"}
        good, bad = sentence.lower(), sentence[0].upper() + sentence[1:]
    elif kind == "uppercase":
        prompt = f"{opening} Use only capital letters."
        truth = {"func_name": "validate_uppercase"}
        good, bad = sentence.upper(), sentence[0].upper() + sentence[1:]
    else:
        phrase = rng.choice(END_PHRASES)
        prompt = f'{opening} End your response with the exact phrase "{phrase}"'
        truth = {"func_name": "validate_end", "end_phrase": phrase}
        capitalised = sentence[0].upper() + sentence[1:]
        good, bad = f"{capitalised} {phrase}", capitalised
    return Instruction(prompt, json.dumps(truth), good, bad)
