"""The 57 consonant-vowel syllables of the ECoG speech task and their articulatory features.

Label order follows the published data and analysis code (Livezey et al. 2019): consonants and
vowels each in alphabetical order of their ASCII spellings, syllable ``label = 3 * consonant +
vowel``. Articulatory features follow Bouchard et al., Nature 495:327 (2013), whose vSMC
recordings these are: the major articulator of each consonant (lips, tongue blade/tip, tongue
body, larynx), its place and manner of articulation and voicing; the vowels /a/, /i/, /u/ by
tongue height and backness, jaw opening and lip rounding.
"""

from __future__ import annotations

CONSONANTS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "sh", "t", "th", "v",
              "w", "y", "z")
"""ASCII spellings, in label order."""
CONSONANT_IPA = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "ʃ", "t", "θ", "v",
                 "w", "j", "z")
VOWELS = ("aa", "ee", "oo")
VOWEL_IPA = ("a", "i", "u")
SYLLABLES = tuple(f"{c}{v}" for c in CONSONANT_IPA for v in VOWEL_IPA)
"""Syllable names (IPA) in label order: ``SYLLABLES[3 * consonant + vowel]``."""

ARTICULATORS = ("labial", "coronal", "dorsal", "laryngeal")
# Major articulator of each consonant (Bouchard et al. 2013): lips; tongue blade/tip; tongue
# body (velars and the palatal glide /j/); larynx only (/h/).
MAJOR_ARTICULATOR = {
    "b": "labial", "f": "labial", "m": "labial", "p": "labial", "v": "labial", "w": "labial",
    "d": "coronal", "l": "coronal", "n": "coronal", "r": "coronal", "s": "coronal",
    "sh": "coronal", "t": "coronal", "th": "coronal", "z": "coronal",
    "g": "dorsal", "k": "dorsal", "y": "dorsal",
    "h": "laryngeal",
}
PLACE = {
    "b": "bilabial", "m": "bilabial", "p": "bilabial", "w": "bilabial",
    "f": "labiodental", "v": "labiodental",
    "th": "dental",
    "d": "alveolar", "l": "alveolar", "n": "alveolar", "s": "alveolar", "t": "alveolar",
    "z": "alveolar",
    "r": "postalveolar", "sh": "postalveolar",
    "y": "palatal",
    "g": "velar", "k": "velar",
    "h": "glottal",
}
MANNER = {
    "b": "stop", "d": "stop", "g": "stop", "k": "stop", "p": "stop", "t": "stop",
    "f": "fricative", "h": "fricative", "s": "fricative", "sh": "fricative",
    "th": "fricative", "v": "fricative", "z": "fricative",
    "m": "nasal", "n": "nasal",
    "l": "approximant", "r": "approximant", "w": "approximant", "y": "approximant",
}
VOICED = frozenset({"b", "d", "g", "l", "m", "n", "r", "v", "w", "y", "z"})


def consonant_of(label: int) -> int:
    """Consonant index of syllable ``label``."""
    return label // len(VOWELS)


def vowel_of(label: int) -> int:
    """Vowel index of syllable ``label``."""
    return label % len(VOWELS)


def articulator_groups() -> list[int]:
    """Index into :data:`ARTICULATORS` of each syllable's consonant, in label order."""
    return [ARTICULATORS.index(MAJOR_ARTICULATOR[c]) for c in CONSONANTS for _ in VOWELS]
