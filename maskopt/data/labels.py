"""The 18 classes: ``label = mask*6 + gender*3 + age_band``.

mask 0 wear / 1 incorrect / 2 not worn; gender 0 male / 1 female;
age band 0 ``<30``, 1 ``30-59``, 2 ``>=old_age`` (60 unless moved).
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 18
MASK_NAMES = ("wear", "incorrect", "not_worn")
GENDER_NAMES = ("male", "female")
AGE_NAMES = ("<30", "30-59", ">=60")
OLD_AGE = 60  # the true threshold of the top age band; validation always uses it
YOUNG_AGE = 30  # the lower bound of the middle band
# Where a config may start the top band for TRAINING (the real set has few people of 60+,
# and a 58 year old looks like one): the search spaces sample from these.
TRAIN_OLD_AGES = (OLD_AGE - 2, OLD_AGE - 1, OLD_AGE)
MAX_OLD_AGE = 100  # old_age must lie in YOUNG_AGE + 1 .. MAX_OLD_AGE

# file stem in a person's folder -> mask state
MASK_FILES: dict[str, int] = {
    "mask1": 0,
    "mask2": 0,
    "mask3": 0,
    "mask4": 0,
    "mask5": 0,
    "incorrect_mask": 1,
    "normal": 2,
}
GENDER_CODES = {"male": 0, "female": 1}


def age_band(age: int | np.ndarray, old_age: int = OLD_AGE) -> int | np.ndarray:
    """0 for <30, 1 for 30..old_age-1, 2 for >=old_age (old_age in 31..100)."""
    if not YOUNG_AGE < old_age <= MAX_OLD_AGE:
        raise ValueError(f"old_age must be in {YOUNG_AGE + 1}..{MAX_OLD_AGE}, but got {old_age=}.")
    if isinstance(age, np.ndarray):
        return (age >= YOUNG_AGE).astype(np.int64) + (age >= old_age).astype(np.int64)
    return int(age >= YOUNG_AGE) + int(age >= old_age)


def encode(mask: int | np.ndarray, gender: int | np.ndarray, age: int | np.ndarray):
    """Class index from mask, gender and age *band* (works on ints and arrays)."""
    return mask * 6 + gender * 3 + age


def decode(label: int | np.ndarray):
    """(mask, gender, age_band) from a class index (works on ints and arrays)."""
    if isinstance(label, (int, np.integer)) and not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in 0..17, but got {label=}.")
    return label // 6, (label // 3) % 2, label % 3


def class_name(label: int) -> str:
    """e.g. 7 -> 'incorrect/male/30-59'."""
    m, g, a = decode(int(label))
    return f"{MASK_NAMES[m]}/{GENDER_NAMES[g]}/{AGE_NAMES[a]}"


CLASS_NAMES = tuple(class_name(i) for i in range(NUM_CLASSES))
