"""The RECIPE.md section 9 rule written out directly in plain Python, for the tests to compare against.

Words: lowercase, then maximal runs of letters/digits (``[^\\W_]+``), as documented for the tool.
"""

import re


def reference_words(text):
    return re.findall(r"[^\W_]+", text.lower())


def reference_fraction(eval_text, train_text, n=8):
    """Share of eval words lying inside an eval n-gram that also occurs in the training text."""
    eval_words, train_words = reference_words(eval_text), reference_words(train_text)
    train_grams = {tuple(train_words[i : i + n]) for i in range(len(train_words) - n + 1)}
    matched = set()
    for i in range(len(eval_words) - n + 1):
        if tuple(eval_words[i : i + n]) in train_grams:
            matched.update(range(i, i + n))
    return len(matched) / len(eval_words) if eval_words else 0.0


def reference_overlaps(eval_texts, train_texts, n=8, threshold=0.5):
    """All (train index, eval index, fraction) with fraction > threshold, by brute force over every pair."""
    found = []
    for t, train_text in enumerate(train_texts):
        for e, eval_text in enumerate(eval_texts):
            fraction = reference_fraction(eval_text, train_text, n)
            if fraction > threshold:
                found.append((t, e, fraction))
    return found
