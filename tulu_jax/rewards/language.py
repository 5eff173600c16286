"""Offline language identification with ``langdetect`` (profiles ship inside the package; no network).

The detector uses its own seeded factory, so results are deterministic and langdetect's global state is
left alone. If langdetect is not installed, ``detect_language`` raises ``LanguageDetectionUnavailable``
with the install command; the checks that need it then fail the instruction rather than guess.
"""

from __future__ import annotations

import threading

from tulu_jax.errors import TuluError

_factory = None
_lock = threading.Lock()


class LanguageDetectionUnavailable(TuluError):
    """langdetect is missing, so a language instruction cannot be checked."""


def _get_factory():
    global _factory
    with _lock:
        if _factory is None:
            try:
                from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
            except ImportError:
                raise LanguageDetectionUnavailable(
                    "checking the response language needs langdetect: pip install langdetect==1.0.9"
                ) from None
            factory = DetectorFactory()
            factory.load_profile(PROFILES_DIRECTORY)
            factory.set_seed(0)
            _factory = factory
        return _factory


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code (``en``, ``fr``, ``zh-cn`` ...) of ``text``; None when it has no letters to judge."""
    factory = _get_factory()
    from langdetect.lang_detect_exception import LangDetectException

    detector = factory.create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


def is_language(text: str, code: str) -> bool | None:
    """Whether ``text`` is in language ``code`` (``zh`` matches ``zh-cn``/``zh-tw``); None if undecidable."""
    detected = detect_language(text)
    if detected is None:
        return None
    code = code.strip().lower()
    return detected == code or detected.split("-")[0] == code.split("-")[0]
