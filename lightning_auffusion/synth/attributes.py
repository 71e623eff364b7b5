"""Attribute vocabulary, caption grammar and caption parser for the synthetic sounds.

A clip is a sequence of 1-3 *events*, played one after the other in equal-length
consecutive segments of the clip. An event is a dict of categorical attributes:

- ``source``: a tone waveform (``sine``, ``square``, ``sawtooth``, ``triangle``), a noise
  colour (``white``, ``pink``, ``brown``) or ``speech``;
- ``pitch``: ``low``, ``medium`` or ``high`` (tones only);
- ``pattern``: ``beeping`` (on/off gating at a few Hz) or ``continuous``;
- ``loudness``: ``loud`` or ``quiet``.

Speech events carry ``speaker`` (``man``/``woman``) and ``words`` instead of the last three.

Every caption the grammar renders names every attribute of every event, with several
phrasings per clip; :func:`parse_caption` inverts all of them. Captions written by hand may
leave attributes out; the parser then returns dicts without those keys (not judged later).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

TONES = ("sine", "square", "sawtooth", "triangle")
NOISES = ("white", "pink", "brown")
SPEECH = "speech"
SOURCES = TONES + NOISES
PITCHES = ("low", "medium", "high")
PATTERNS = ("beeping", "continuous")
LOUDNESSES = ("loud", "quiet")
SPEAKERS = ("man", "woman")

# Fundamental-frequency ranges in Hz. Well separated (ratios >= 1.5 between ranges) and
# low enough that the 3rd harmonic of every tone stays below 8 kHz (the mel's upper edge).
PITCH_RANGES_HZ: dict[str, tuple[float, float]] = {
    "low": (150.0, 280.0),
    "medium": (450.0, 800.0),
    "high": (1200.0, 2200.0),
}

# (source, pitch, pattern) combinations that never occur in train/val; every test clip has
# at least one event drawn from them. Each source, pitch and pattern value still occurs in
# training through its other combinations, so the test split measures composition.
HELDOUT_COMBINATIONS: tuple[tuple[str, str | None, str], ...] = (
    ("sawtooth", "high", "beeping"),
    ("triangle", "low", "continuous"),
    ("square", "medium", "beeping"),
    ("sine", "medium", "continuous"),
    ("pink", None, "beeping"),
)

SPEECH_PHRASES = (
    "hello world",
    "good morning",
    "the cat sat on the mat",
    "turn left at the next corner",
    "one two three four five",
    "please close the door",
    "it is raining outside",
    "see you tomorrow",
)

# ---------------------------------------------------------------------------------------
# Words. Rendering picks from the lists; parsing maps every word back to its value.
# ---------------------------------------------------------------------------------------
_LOUD_ADJ = {"loud": ("loud", "strong"), "quiet": ("quiet", "soft", "faint")}
_LOUD_ADV = {"loud": ("loudly",), "quiet": ("quietly", "softly", "faintly")}
_PITCH_ADJ = {
    "low": ("low-pitched", "low", "deep"),
    "medium": ("medium-pitched", "mid-pitched", "medium"),
    "high": ("high-pitched", "high", "shrill"),
}
_PITCH_NOUN = {"low": ("low",), "medium": ("medium",), "high": ("high",)}
_SOURCE_WORD = {
    "sine": ("sine",),
    "square": ("square",),
    "sawtooth": ("sawtooth", "saw"),
    "triangle": ("triangle",),
    "white": ("white",),
    "pink": ("pink",),
    "brown": ("brown", "brownian"),
}

# Event templates per (kind, pattern). Fields: {L} loudness adjective, {La} loudness adverb,
# {P} pitch adjective, {Pn} pitch noun, {S} source word.
_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("tone", "beeping"): (
        "a {L} {P} {S} beep",
        "{L} {P} {S} beeping",
        "{L} {P} {S} beeps",
        "a {S} wave beeping {La} at a {Pn} pitch",
        "{La} repeated {P} {S} beeps",
    ),
    ("tone", "continuous"): (
        "a {L} {P} {S} tone",
        "a {L} {P} {S} drone",
        "a {L} steady {P} {S} tone",
        "a {S} wave humming {La} at a {Pn} pitch",
        "a continuous {L} {P} {S} tone",
    ),
    ("noise", "beeping"): (
        "{L} bursts of {S} noise",
        "{L} {S} noise pulsing on and off",
        "{S} noise beeping {La}",
        "a {L} pulsing {S} noise",
    ),
    ("noise", "continuous"): (
        "{L} steady {S} noise",
        "a {L} continuous {S} noise",
        "{S} noise playing {La} and steadily",
        "a constant {L} {S} noise",
    ),
}
_CONNECTORS = (" followed by ", ", then ", " and then ", ", after that ", ". Then ")
_PREFIXES = ("", "", "", "you can hear ", "a recording of ")
_SPEECH_TEMPLATES = (
    "a {man} says '{w}'",
    "a {man} speaking the words '{w}'",
    'a {male} voice says "{w}"',
    "someone with a {male} voice saying '{w}'",
    "a {man} speaks: '{w}'",
    'a {man} calmly says "{w}"',
)
_SPEAKER_WORDS = {"man": {"man": "man", "male": "male"}, "woman": {"man": "woman", "male": "female"}}

_KEYWORDS: dict[str, tuple[str, str]] = {}


def _register(attr: str, value: str, words: tuple[str, ...]) -> None:
    for phrase in words:
        for word in re.findall(r"[a-z]+", phrase):
            if word in ("pitched",):
                continue
            _KEYWORDS[word] = (attr, value)


for _v, _ws in _LOUD_ADJ.items():
    _register("loudness", _v, _ws + _LOUD_ADV[_v])
for _v, _ws in _PITCH_ADJ.items():
    _register("pitch", _v, _ws + _PITCH_NOUN[_v])
for _v, _ws in _SOURCE_WORD.items():
    _register("source", _v, _ws)
_register(
    "pattern",
    "beeping",
    ("beep", "beeps", "beeping", "bursts", "burst", "pulsing", "pulses", "pulse", "repeated", "intermittent"),
)
_register(
    "pattern",
    "continuous",
    ("tone", "drone", "steady", "steadily", "humming", "continuous", "continuously", "constant", "sustained"),
)
_register("pitch", "medium", ("mid",))

_SPLIT_RE = re.compile(r"\bfollowed by\b|\band then\b|\bthen\b|\bafter that\b|\bafterwards\b")
_SPEECH_RE = re.compile(
    r"\b(man|woman|male|female)\b.*?\b(says|saying|speaks|speaking|said)\b[^'\"]*['\"](.+?)['\"]",
)


def is_tone(source: str) -> bool:
    return source in TONES


def is_noise(source: str) -> bool:
    return source in NOISES


def combination(event: dict[str, Any]) -> tuple[str, str | None, str]:
    """The (source, pitch, pattern) triple of an event (pitch None for noise)."""
    return (event["source"], event.get("pitch"), event["pattern"])


def is_heldout(event: dict[str, Any]) -> bool:
    """True when the event's (source, pitch, pattern) is one of HELDOUT_COMBINATIONS."""
    if event.get("source") not in SOURCES:
        return False
    return combination(event) in HELDOUT_COMBINATIONS


def _random_event(rng: np.random.Generator) -> dict[str, str]:
    source = SOURCES[rng.integers(len(SOURCES))]
    event = {"source": source}
    if is_tone(source):
        event["pitch"] = PITCHES[rng.integers(len(PITCHES))]
    event["pattern"] = PATTERNS[rng.integers(len(PATTERNS))]
    event["loudness"] = LOUDNESSES[rng.integers(len(LOUDNESSES))]
    return event


def sample_events(rng: np.random.Generator, max_events: int = 3, heldout: bool = False) -> list[dict]:
    """Draw the events of one clip.

    ``heldout=False``: 1..max_events events, none of them a held-out combination (train/val).
    ``heldout=True``: at least one event (at a random position) is a held-out combination; the
    others are drawn freely (test).
    """
    if max_events < 1:
        raise ValueError(f"max_events must be >= 1, got {max_events}")
    n = int(rng.integers(1, max_events + 1))
    events = []
    for _ in range(n):
        event = _random_event(rng)
        while not heldout and is_heldout(event):
            event = _random_event(rng)
        events.append(event)
    if heldout and not any(is_heldout(e) for e in events):
        source, pitch, pattern = HELDOUT_COMBINATIONS[rng.integers(len(HELDOUT_COMBINATIONS))]
        event = {"source": source}
        if pitch is not None:
            event["pitch"] = pitch
        event["pattern"] = pattern
        event["loudness"] = LOUDNESSES[rng.integers(len(LOUDNESSES))]
        events[int(rng.integers(n))] = event
    return events


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def render_event(event: dict[str, Any], rng: np.random.Generator) -> str:
    """One phrase for one (non-speech) event, e.g. 'a loud high-pitched sine beep'."""
    source = event["source"]
    kind = "tone" if is_tone(source) else "noise"
    template = _pick(rng, _TEMPLATES[(kind, event["pattern"])])
    fields = {
        "L": _pick(rng, _LOUD_ADJ[event["loudness"]]),
        "La": _pick(rng, _LOUD_ADV[event["loudness"]]),
        "S": _pick(rng, _SOURCE_WORD[source]),
    }
    if kind == "tone":
        fields["P"] = _pick(rng, _PITCH_ADJ[event["pitch"]])
        fields["Pn"] = _pick(rng, _PITCH_NOUN[event["pitch"]])
    return template.format(**fields)


def render_caption(events: list[dict[str, Any]], rng: np.random.Generator) -> str:
    """One caption naming every attribute of every event."""
    if len(events) == 1 and events[0].get("source") == SPEECH:
        event = events[0]
        template = _pick(rng, _SPEECH_TEMPLATES)
        text = template.format(w=event["words"], **_SPEAKER_WORDS[event["speaker"]])
        return text[0].upper() + text[1:] if rng.random() < 0.5 else text
    text = render_event(events[0], rng)
    for event in events[1:]:
        connector = _pick(rng, _CONNECTORS)
        phrase = render_event(event, rng)
        text += connector + phrase
    text = _pick(rng, _PREFIXES) + text
    return text[0].upper() + text[1:]


def render_captions(events: list[dict[str, Any]], rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` distinct captions of the same events (fewer only if the grammar runs out)."""
    captions: list[str] = []
    for _ in range(20 * n):
        caption = render_caption(events, rng)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == n:
            break
    return captions


def heldout_prompts(n: int, seed: int = 0, max_events: int = 3) -> list[str]:
    """``n`` captions of clips containing held-out combinations (generation prompts).

    Deterministic for ``seed``; the same distribution as the ``test`` split of ``synth``.
    """
    rng = np.random.default_rng([seed, 7919])
    return [render_caption(sample_events(rng, max_events, heldout=True), rng) for _ in range(n)]


def _parse_chunk(chunk: str) -> dict[str, str] | None:
    event: dict[str, str] = {}
    for word in re.findall(r"[a-z]+", chunk):
        hit = _KEYWORDS.get(word)
        if hit is None:
            continue
        attr, value = hit
        if event.get(attr, value) != value:
            return None  # two different values of one attribute in one event
        event[attr] = value
    return event


def parse_caption(text: str) -> list[dict[str, str]] | None:
    """Invert the caption grammar: the list of event attribute dicts, or None.

    Events are split at 'followed by' / 'then' / 'after that'. Each event must name its
    source; other attributes are optional (absent keys are not judged by the analyser).
    Returns None for captions without a recognisable source in some event, with
    contradicting words in one event, or with a pitch given for a noise.
    """
    if not isinstance(text, str):
        return None
    lowered = text.lower().strip()
    match = _SPEECH_RE.search(lowered)
    if match:
        speaker = "man" if match.group(1) in ("man", "male") else "woman"
        return [{"source": SPEECH, "speaker": speaker, "words": match.group(3).strip()}]
    events = []
    for chunk in _SPLIT_RE.split(lowered):
        event = _parse_chunk(chunk)
        if event is None:
            return None
        if not event:
            continue  # connector leftovers such as "and" or "."
        if "source" not in event:
            return None
        if is_noise(event["source"]) and "pitch" in event:
            return None
        # keys in a fixed order, like the generator writes them
        events.append({k: event[k] for k in ("source", "pitch", "pattern", "loudness") if k in event})
    return events or None
