"""A synthetic data set in the mask-competition layout.

The real photos are not public, so the demo, the tests and the benchmarks run on
drawn ones. Each person has a fixed look (skin, face shape, hair, clothes, the
room behind them) over their seven photos; the photos differ in pose, lighting,
noise and the mask worn. The three labels are each visible, none trivially:

- mask: a mask over nose, mouth and chin (wear), one below the nose or on the
  chin (incorrect), or none (not worn). Mask colours also appear in the clutter.
- gender: hair length, face width, brow weight, lip colour, stubble; each cue
  has exceptions (short-haired women, long-haired men), so no single one decides.
- age: dark hair and a smooth face when young; salt-and-pepper hair and two or three
  forehead lines through the middle years, more with age; white hair, five deep lines
  and mostly glasses from 58 (the real set's old people are all 60). Some middle-aged
  people dye their hair or wear glasses, and line counts vary, so people near a band
  edge get mixed up, as in the real set.

Same seed, same bytes: every person draws from their own seeded generator and
JPEGs are encoded at a fixed quality with no metadata.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import maskopt
from maskopt.data.cache import CACHE_DIRNAME
from maskopt.data.labels import GENDER_NAMES, MASK_FILES, NUM_CLASSES, OLD_AGE, age_band, encode
from maskopt.data.layout import (
    CSV_COLUMNS,
    EVAL,
    EVAL_COLUMNS,
    IMAGES,
    INFO_CSV,
    SOLUTION_COLUMNS,
    SOLUTION_CSV,
    TRAIN,
    TRAIN_CSV,
)
from maskopt.errors import ConfigError
from maskopt.outputs import Owned, atomic_write_text, check_out_dir, replace_dir
from maskopt.progress import progress_bar

# cv2 is imported inside the functions that draw: importing it edits os.environ
# (LD_LIBRARY_PATH), and importing maskopt changes nothing in the process.

# The real set's mix (2,700 people): ~61% female; ages ~47% <30, ~45% 30-59, ~7% >=60.
FEMALE_SHARE = 0.61
AGE_BAND_SHARE = (0.47, 0.46, 0.07)
JPEG_QUALITY = 90
FACE_SCALE = 1.3  # face size against the photo: ~60% of the centre crop's width
MIN_SIDE = 32
PEOPLE = 150  # the default number of train people
SIZE = (384, 512)  # the real photos' width x height
PHOTO_STEMS = tuple(MASK_FILES)  # mask1..mask5, incorrect_mask, normal
# The file that marks a folder as a set `synth` wrote (with its settings): only such a set, and
# nothing else, is replaced by a later `synth` into the same folder.
MARKER = ".maskopt-synth.json"
MARKED = ("people", "eval_people", "size", "seed")
SYNTHETIC = Owned(
    what="synthetic data set",
    marks=(MARKER,),
    entries=frozenset({MARKER, TRAIN, EVAL, CACHE_DIRNAME}),
    made_by="maskopt synth",
)

# Colours are RGB; images are converted to BGR only to encode them.
SKIN_TONES = np.array(
    [
        [238, 206, 179],
        [224, 187, 155],
        [210, 170, 135],
        [196, 152, 118],
        [172, 128, 96],
        [141, 98, 70],
    ],
    dtype=np.float64,
)
HAIR_DARK = np.array([[25, 20, 18], [45, 32, 25], [55, 40, 40], [60, 42, 30]], dtype=np.float64)
HAIR_GREY = np.array([[200, 200, 200], [170, 170, 172], [225, 222, 215]], dtype=np.float64)
MASK_COLOURS = np.array(
    [
        [240, 240, 240],
        [150, 190, 225],
        [30, 30, 35],
        [130, 130, 135],
        [120, 160, 230],
        [40, 50, 90],
        [190, 40, 50],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Person:
    """Who is in the photos: the labels and the look that stays over all seven."""

    pid: str
    gender: int  # 0 male / 1 female
    age: int
    race: str
    seed: tuple[int, ...]  # the person's own generator: same seed -> same person


def parse_size(text: str) -> tuple[int, int]:
    """'384x512' -> (384, 512), width x height; ConfigError otherwise."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--size must be WIDTHxHEIGHT such as 384x512, but got {text!r}.")
    size = (int(parts[0]), int(parts[1]))
    check_size(size)
    return size


def check_size(size: tuple[int, int]) -> None:
    w, h = size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ConfigError(f"size must be at least {MIN_SIDE}x{MIN_SIDE} pixels, but got {w}x{h}.")


def _quota(n: int, shares: np.ndarray) -> np.ndarray:
    """Split n into integer counts in the given shares (largest remainder), so even a
    small set gets the real mix as closely as integers allow."""
    raw = shares * n
    counts = np.floor(raw).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _draw_age(rng: np.random.Generator, band: int) -> int:
    if band == 0:
        return int(rng.integers(18, 30))
    if band == 1:
        return int(rng.integers(30, 60))
    # The real set's old people are all exactly 60; keep most of them there.
    return OLD_AGE if rng.random() < 0.85 else int(rng.integers(OLD_AGE + 1, 76))


def make_people(n: int, seed: int, split: int, first_id: int) -> list[Person]:
    """n people in the real gender x age mix, shuffled; ids numbered from first_id."""
    rng = np.random.default_rng([seed, split, 0])
    shares = np.outer([1 - FEMALE_SHARE, FEMALE_SHARE], AGE_BAND_SHARE).ravel()  # gender*3 + band
    cells = np.repeat(np.arange(6), _quota(n, shares))
    rng.shuffle(cells)
    people = []
    for i, cell in enumerate(cells):
        gender, band = divmod(int(cell), 3)
        people.append(
            Person(
                pid=f"{first_id + i:06d}",
                gender=gender,
                age=_draw_age(rng, band),
                race="Asian",
                seed=(seed, split, 1, i),
            )
        )
    return people


# ---------------------------------------------------------------------------- drawing


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _col(c: np.ndarray | tuple) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _thick(v: float) -> int:
    return max(1, int(round(v)))


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A room: a two-colour gradient wall and clutter (boxes, discs, bars), some in
    skin, hair or mask colours so colour alone says nothing."""
    import cv2

    top, bottom = rng.uniform(60, 210, 3), rng.uniform(60, 210, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.uint8).copy()
    palette = np.concatenate([SKIN_TONES, HAIR_GREY, MASK_COLOURS])
    for _ in range(int(rng.integers(4, 14))):
        colour = (
            palette[rng.integers(len(palette))] if rng.random() < 0.4 else rng.uniform(0, 255, 3)
        )
        colour = _col(colour)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(
                img,
                _pt(x, y),
                _pt(x + rng.uniform(0.05, 0.4) * w, y + rng.uniform(0.05, 0.4) * h),
                colour,
                -1,
            )
        elif kind == 1:
            cv2.circle(img, _pt(x, y), int(rng.uniform(0.03, 0.15) * w), colour, -1)
        else:
            cv2.line(
                img,
                _pt(x, y),
                _pt(rng.uniform(0, w), rng.uniform(0, h)),
                colour,
                _thick(rng.uniform(0.01, 0.04) * w),
            )
    return img


@dataclass(frozen=True)
class _Face:
    """Where the face parts are on the person's canvas (pixels)."""

    cx: float
    cy: float
    ax: float  # face half-width
    ay: float  # face half-height
    u: float  # one unit: width / 384
    skin: tuple[int, int, int]
    nose_tip: float  # y of the nose tip
    mouth_y: float


def _greyness(age: int) -> float:
    if age < 30:
        return 0.0
    if age < 58:
        return 0.3 + 0.2 * (age - 30) / 28
    return 0.97


def _wrinkles(age: int) -> float:
    """How many lines a face shows: none when young, 2-3 through the middle years, 5 old."""
    if age < 28:
        return 0.0
    if age < 30:
        return 0.6
    if age < 58:
        return 2.0 + 1.5 * (age - 30) / 28
    return 5.0


def _person_layer(
    p: Person, rng: np.random.Generator, w: int, h: int
) -> tuple[np.ndarray, np.ndarray, _Face]:
    """The person on a transparent canvas: (RGB, alpha, face geometry)."""
    import cv2

    u = FACE_SCALE * w / 384.0  # the face fills most of the centre crop, as in the real photos
    rgb = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)

    def fill_ellipse(c, axes, colour, angle=0.0, start=0, end=360):
        cv2.ellipse(rgb, _pt(*c), _pt(*axes), angle, start, end, colour, -1, cv2.LINE_AA)
        cv2.ellipse(alpha, _pt(*c), _pt(*axes), angle, start, end, 255, -1)

    def fill_poly(pts, colour):
        arr = np.array([_pt(*q) for q in pts], np.int32)
        cv2.fillPoly(rgb, [arr], colour, cv2.LINE_AA)
        cv2.fillPoly(alpha, [arr], 255)

    male = p.gender == 0
    cx, cy = w / 2 + rng.normal(0, 4) * u, 0.47 * h + rng.normal(0, 4) * u
    # Face shape: men wider with a squarer jaw, women narrower; overlapping ranges.
    ax = (rng.normal(73, 4) if male else rng.normal(57, 4)) * u
    ay = (rng.normal(82, 4) if male else rng.normal(84, 4)) * u
    tone = SKIN_TONES[min(len(SKIN_TONES) - 1, int(abs(rng.normal(0, 1.5))))] + rng.normal(0, 8, 3)
    skin = _col(tone)
    dark_skin = _col(tone * 0.72)

    # Hair colour: dark when young, salt and pepper through the middle years, white from
    # about sixty; some people dye it dark, so hair alone never settles the age.
    grey = _greyness(p.age) + rng.normal(0, 0.07)
    if 40 <= p.age < 58 and rng.random() < 0.1:
        grey = rng.uniform(0, 0.2)  # dyed
    grey = float(np.clip(grey, 0, 1))
    hair_rgb = (
        HAIR_DARK[rng.integers(len(HAIR_DARK))] * (1 - grey)
        + HAIR_GREY[rng.integers(len(HAIR_GREY))] * grey
    )
    hair = _col(hair_rgb + rng.normal(0, 6, 3))

    # Hair length: mostly short for men and long for women, with exceptions.
    r = rng.random()
    length = (
        (0 if r < 0.96 else 1 if r < 0.99 else 2)
        if male
        else (2 if r < 0.88 else 1 if r < 0.95 else 0)
    )

    # Body and neck.
    cloth = _col(rng.uniform(20, 235, 3))
    fill_ellipse((cx + rng.normal(0, 4) * u, h * 0.98), (rng.normal(150, 12) * u, 125 * u), cloth)
    fill_poly(
        [
            (cx - 0.45 * ax, cy + 0.6 * ay),
            (cx + 0.45 * ax, cy + 0.6 * ay),
            (cx + 0.5 * ax, cy + ay + 45 * u),
            (cx - 0.5 * ax, cy + ay + 45 * u),
        ],
        skin,
    )

    # Hair behind the face.
    if length == 2:
        drop = rng.uniform(55, 95) * u
        fill_ellipse((cx, cy + 0.1 * ay), (ax + 22 * u, ay + 26 * u), hair)
        fill_poly(
            [
                (cx - ax - 22 * u, cy),
                (cx + ax + 22 * u, cy),
                (cx + ax + 18 * u, cy + ay + drop),
                (cx - ax - 18 * u, cy + ay + drop),
            ],
            hair,
        )
    elif length == 1:
        fill_ellipse((cx, cy), (ax + 16 * u, ay + 18 * u), hair)
        fill_poly(
            [
                (cx - ax - 16 * u, cy),
                (cx + ax + 16 * u, cy),
                (cx + ax + 10 * u, cy + 0.75 * ay),
                (cx - ax - 10 * u, cy + 0.75 * ay),
            ],
            hair,
        )
    else:
        fill_ellipse((cx, cy - 0.15 * ay), (ax + 8 * u, ay + 10 * u), hair, 0, 180, 360)

    # Ears, then the face.
    for side in (-1, 1):
        fill_ellipse((cx + side * ax, cy + 2 * u), (9 * u, 16 * u), skin)
    jaw_angle = 0.0
    fill_ellipse((cx, cy), (ax, ay), skin, jaw_angle)
    if male:  # a squarer jaw: widen the lower face
        fill_ellipse((cx, cy + 0.45 * ay), (0.9 * ax, 0.55 * ay), skin)

    # Fringe over the hairline (short of the forehead lines, which tell the age).
    fringe = rng.uniform(0.6, 0.68) * ay + 0.22 * ay
    cv2.ellipse(
        rgb, _pt(cx, cy - 0.62 * ay), _pt(ax * 1.02, 0.42 * ay), 0, 180, 360, hair, -1, cv2.LINE_AA
    )
    if rng.random() < 0.5:
        cv2.ellipse(
            rgb,
            _pt(cx - rng.uniform(0, 0.4) * ax, cy - fringe),
            _pt(0.7 * ax, 0.22 * ay),
            0,
            0,
            180,
            hair,
            -1,
        )

    # Eyes and brows.
    ex, ey = rng.normal(25, 2) * u, cy - 14 * u
    brow = _thick((rng.normal(6.5, 0.8) if male else rng.normal(3.0, 0.7)) * u)
    brow_col = _col(np.array(hair_rgb) * 0.6 if grey < 0.5 else np.array(hair_rgb) * 0.8)
    for side in (-1, 1):
        x = cx + side * ex
        cv2.ellipse(
            rgb, _pt(x, ey), _pt(10 * u, 5 * u), 0, 0, 360, (245, 245, 240), -1, cv2.LINE_AA
        )
        cv2.circle(rgb, _pt(x, ey), _thick(4 * u), (30, 25, 20), -1, cv2.LINE_AA)
        cv2.line(
            rgb,
            _pt(x - 12 * u, ey - 14 * u),
            _pt(x + 12 * u, ey - 15 * u + side * 2 * u),
            brow_col,
            brow,
            cv2.LINE_AA,
        )

    # Glasses, far more often on old people (reading glasses), seen over a mask too.
    if rng.random() < (0.85 if p.age >= 58 else 0.15 if p.age >= 30 else 0.03):
        frame = _col(rng.uniform(10, 90, 3))
        for side in (-1, 1):
            x = cx + side * ex
            cv2.rectangle(
                rgb,
                _pt(x - 15 * u, ey - 10 * u),
                _pt(x + 15 * u, ey + 10 * u),
                frame,
                _thick(3 * u),
                cv2.LINE_AA,
            )
        cv2.line(
            rgb,
            _pt(cx - ex + 15 * u, ey - 3 * u),
            _pt(cx + ex - 15 * u, ey - 3 * u),
            frame,
            _thick(3 * u),
            cv2.LINE_AA,
        )

    # Nose: a ridge and a shaded tip with nostrils.
    nose_tip = cy + rng.normal(24, 2) * u
    cv2.line(
        rgb,
        _pt(cx, cy - 8 * u),
        _pt(cx - 3 * u, nose_tip - 4 * u),
        dark_skin,
        _thick(2 * u),
        cv2.LINE_AA,
    )
    cv2.ellipse(rgb, _pt(cx, nose_tip), _pt(11 * u, 6 * u), 0, 0, 360, dark_skin, -1, cv2.LINE_AA)
    for side in (-1, 1):
        cv2.circle(rgb, _pt(cx + side * 5 * u, nose_tip + 2 * u), _thick(3 * u), (50, 30, 25), -1)

    # Mouth: redder and fuller lips more often on women.
    mouth_y = cy + rng.normal(47, 3) * u
    lip = (
        np.array([200, 90, 100])
        if (not male and rng.random() < 0.8)
        else tone * np.array([0.8, 0.55, 0.55])
    )
    cv2.ellipse(
        rgb,
        _pt(cx, mouth_y),
        _pt(rng.normal(19, 2) * u, (6 if not male else 4) * u),
        0,
        0,
        360,
        _col(lip + rng.normal(0, 8, 3)),
        -1,
        cv2.LINE_AA,
    )

    # Stubble or beard on some men: a darker jaw seen when the mask is off.
    if male and rng.random() < 0.3:
        beard = np.zeros_like(alpha)
        cv2.ellipse(beard, _pt(cx, cy + 0.55 * ay), _pt(0.85 * ax, 0.45 * ay), 0, 0, 180, 255, -1)
        cv2.ellipse(beard, _pt(cx, mouth_y), _pt(22 * u, 8 * u), 0, 0, 360, 0, -1)
        on = beard > 0
        rgb[on] = (rgb[on] * rng.uniform(0.55, 0.8)).astype(np.uint8)

    # Wrinkles: forehead lines, crow's feet and smile lines, more with age.
    n_lines = int(np.clip(round(_wrinkles(p.age) + rng.normal(0, 0.4)), 0, 6))
    line_col = _col(tone * rng.uniform(0.35, 0.5))
    lw = _thick((6.0 if p.age >= 58 else 4.5) * u)  # a pixel or so at 64 px: visible, not loud
    for k in range(min(n_lines, 4)):
        y = cy - 32 * u - k * 6 * u
        cv2.ellipse(
            rgb, _pt(cx, y + 25 * u), _pt(0.55 * ax, 25 * u), 0, 235, 305, line_col, lw, cv2.LINE_AA
        )
    if n_lines >= 2:
        for side in (-1, 1):
            x0 = cx + side * (ex + 13 * u)
            for k in range(min(n_lines - 1, 3)):
                cv2.line(
                    rgb,
                    _pt(x0, ey + (k - 1) * 4 * u),
                    _pt(x0 + side * 9 * u, ey + (k - 1) * 7 * u),
                    line_col,
                    lw,
                    cv2.LINE_AA,
                )
    if n_lines >= 3:
        for side in (-1, 1):
            cv2.line(
                rgb,
                _pt(cx + side * 12 * u, nose_tip + 2 * u),
                _pt(cx + side * 24 * u, mouth_y + 6 * u),
                line_col,
                lw,
                cv2.LINE_AA,
            )

    face = _Face(cx=cx, cy=cy, ax=ax, ay=ay, u=u, skin=skin, nose_tip=nose_tip, mouth_y=mouth_y)
    return rgb, alpha, face


def _draw_mask(rgb: np.ndarray, f: _Face, state: int, rng: np.random.Generator) -> None:
    """Draw a mask for state 0 (over nose, mouth and chin) or 1 (below the nose, or
    down on the chin); state 2 draws nothing."""
    import cv2

    if state == 2:
        return
    u = f.u
    if state == 0:
        top = f.cy + rng.uniform(-4, 4) * u  # over the nose bridge
    elif rng.random() < 0.7:
        top = f.nose_tip + rng.uniform(12, 16) * u  # under the nose: nose and lip show
    else:
        top = f.mouth_y + rng.uniform(8, 12) * u  # on the chin: mouth shows
    colour = MASK_COLOURS[rng.integers(len(MASK_COLOURS))] + rng.normal(0, 10, 3)
    side = f.ax + 3 * u
    bottom = f.cy + f.ay + 6 * u
    pts = [
        (f.cx - side, top + 10 * u),
        (f.cx - 0.4 * side, top - 2 * u),
        (f.cx, top - 4 * u),
        (f.cx + 0.4 * side, top - 2 * u),
        (f.cx + side, top + 10 * u),
        (f.cx + 0.75 * side, min(bottom - 8 * u, max(top + 14 * u, f.cy + 0.8 * f.ay))),
        (f.cx, bottom),
        (f.cx - 0.75 * side, min(bottom - 8 * u, max(top + 14 * u, f.cy + 0.8 * f.ay))),
    ]
    arr = np.array([_pt(*q) for q in pts], np.int32)
    cv2.fillPoly(rgb, [arr], _col(colour), cv2.LINE_AA)
    edge = _col(colour * 0.6)
    cv2.polylines(rgb, [arr], True, edge, _thick(3 * u), cv2.LINE_AA)  # seams
    if rng.random() < 0.8:  # pleats of a surgical mask
        span = bottom - top
        for k in (0.3, 0.5, 0.7):
            y = top + k * span * 0.8
            cv2.line(
                rgb,
                _pt(f.cx - 0.8 * side, y),
                _pt(f.cx + 0.8 * side, y),
                edge,
                _thick(2.5 * u),
                cv2.LINE_AA,
            )
    for s in (-1, 1):  # ear loops
        cv2.line(
            rgb,
            _pt(f.cx + s * side, top + 10 * u),
            _pt(f.cx + s * (f.ax + 6 * u), f.cy - 4 * u),
            edge,
            _thick(2 * u),
            cv2.LINE_AA,
        )


class _Noise:
    """Banks of Gaussian noise at a few strengths, cropped at random offsets: fresh-
    looking noise for every photo at the cost of a slice instead of a new draw.
    Made once per data set (from its seed) and shared by every person."""

    SIGMAS = (2.0, 3.0, 5.0, 7.0)

    def __init__(self, seed: int, w: int, h: int) -> None:
        rng = np.random.default_rng([seed, 9])
        self.w, self.h, self.pad = w, h, max(8, w // 6)
        unit = rng.normal(0, 1, (h + self.pad, w + self.pad, 3))
        self.banks = [(unit * s).round().astype(np.int16) for s in self.SIGMAS]

    def add(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        bank = self.banks[int(rng.integers(len(self.banks)))]
        x, y = rng.integers(0, self.pad, 2)
        return cv2.add(img, bank[y : y + self.h, x : x + self.w], dtype=cv2.CV_8U)  # saturating


def _photo(
    bg: np.ndarray,
    rgb: np.ndarray,
    alpha: np.ndarray,
    f: _Face,
    state: int,
    rng: np.random.Generator,
    noise: _Noise,
) -> np.ndarray:
    """One photo: the person with a mask state, posed, lit and noised, over their room."""
    import cv2

    h, w = alpha.shape
    layer = rgb.copy()
    _draw_mask(layer, f, state, rng)
    scale = rng.uniform(0.94, 1.06)
    m = cv2.getRotationMatrix2D((f.cx, f.cy), rng.normal(0, 2.5), scale)
    m[:, 2] += (rng.normal(0, 0.02 * w), rng.normal(0, 0.015 * h))
    layer = cv2.warpAffine(layer, m, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_NEAREST)
    img = cv2.copyTo(layer, a, bg.copy())
    # Lighting: exposure and a colour cast as one per-channel affine map.
    gain = rng.uniform(0.8, 1.15) * (1 + rng.normal(0, 0.04, 3))
    light = np.hstack([np.diag(gain), rng.normal(0, 6, (3, 1))])
    img = cv2.transform(img, light)
    if rng.random() < 0.1:  # a little out of focus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2) * w / 192)
    return noise.add(img, rng)


def render_person(
    p: Person, size: tuple[int, int], noise: _Noise | None = None
) -> dict[str, np.ndarray]:
    """The person's seven photos, RGB uint8 (H, W, 3), keyed by file stem."""
    w, h = size
    rng = np.random.default_rng(list(p.seed))
    bg = _background(rng, w, h)
    rgb, alpha, face = _person_layer(p, rng, w, h)
    noise = noise or _Noise(p.seed[0], w, h)
    return {
        stem: _photo(bg, rgb, alpha, face, MASK_FILES[stem], rng, noise) for stem in PHOTO_STEMS
    }


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:  # pragma: no cover - OpenCV failing to encode is a bug, not bad input
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _drawn(
    people: list[Person], size: tuple[int, int], noise: _Noise
) -> Iterator[tuple[Person, dict[str, bytes]]]:
    """Each person with their seven photos as JPEG bytes, in order. Drawn by a thread per
    core: OpenCV's drawing, warping and encoding let go of the GIL, and each person's photos
    come from their own seed, so the set is the same byte for byte with any number of
    threads."""

    def draw(p: Person) -> tuple[Person, dict[str, bytes]]:
        return p, {stem: _encode_jpeg(img) for stem, img in render_person(p, size, noise).items()}

    threads = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ahead: deque[Future] = deque()  # a few people drawn ahead of the writing, not all
        for p in people:
            ahead.append(pool.submit(draw, p))
            if len(ahead) > 2 * threads:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator:
    if not enabled:
        yield lambda: None
        return
    with progress_bar() as bar:
        task = bar.add_task("drawing people", total=total)
        yield lambda: bar.advance(task)


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote."""

    out: str
    people: int
    eval_people: int
    train_images: int
    eval_images: int
    size: str  # WIDTHxHEIGHT
    seed: int
    female: int  # train people
    age_bands: list[int]  # train people per age band
    classes: list[int]  # train images per class
    train_ids: list[str]
    eval_ids: list[str]
    seconds: float


def synthesize(
    out: str | Path,
    *,
    people: int = PEOPLE,
    eval_people: int | None = None,
    seed: int = 0,
    size: tuple[int, int] | str = SIZE,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic data set in the competition layout under `out`.

    train/train.csv, train/images/<id>_<gender>_<race>_<age>/{mask1..5,incorrect_mask,normal}.jpg,
    eval/info.csv (ans empty), eval/images/<ImageID> (other people, shuffled, opaque ids) and
    eval/solution.csv (ImageID, ans, person: the true class, old age 60, and whose photo it
    is). `size` is (width, height), or the text WIDTHxHEIGHT.
    Returns a summary: counts of people, images and classes.
    """
    if people < 1:
        raise ConfigError(f"people must be at least 1, but got {people=}.")
    if eval_people is None:
        eval_people = round(people * 2 / 3)
    if eval_people < 0:
        raise ConfigError(f"eval_people must be 0 or more, but got {eval_people=}.")
    size = parse_size(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
    check_size(size)
    out = check_out_dir(out, SYNTHETIC, "synth")  # before any drawing
    start = time.perf_counter()
    with replace_dir(out, SYNTHETIC, "synth") as folder:
        summary = _write(folder, people, eval_people, seed, size, progress)
    return SynthSummary(out=str(out), **summary, seconds=round(time.perf_counter() - start, 2))


def _write(
    out: Path, people: int, eval_people: int, seed: int, size: tuple[int, int], progress: bool
) -> dict:
    """Draw and write the set into the (new, empty) folder `out`; the marker last."""
    train = make_people(people, seed, split=0, first_id=1)
    evals = make_people(eval_people, seed, split=1, first_id=people + 1)

    noise = _Noise(seed, *size)
    train_dir, eval_dir = out / TRAIN, out / EVAL
    (train_dir / IMAGES).mkdir(parents=True, exist_ok=True)
    classes: Counter[int] = Counter()
    eval_rows: list[tuple[str, int, str]] = []  # ImageID, class, person
    with _progress(people + eval_people, progress) as advance:
        for p, photos in _drawn(train, size, noise):
            folder = train_dir / IMAGES / folder_name(p)
            folder.mkdir(exist_ok=True)
            for stem, jpeg in photos.items():
                (folder / f"{stem}.jpg").write_bytes(jpeg)
                classes[int(encode(MASK_FILES[stem], p.gender, age_band(p.age)))] += 1
            advance()
        if eval_people:
            (eval_dir / IMAGES).mkdir(parents=True, exist_ok=True)
        for p, photos in _drawn(evals, size, noise):
            for stem, jpeg in photos.items():
                # Opaque ids like the real set's: nothing in the name tells the label.
                image_id = (
                    hashlib.sha1(f"maskopt-synth:{seed}:{p.pid}:{stem}".encode()).hexdigest()
                    + ".jpg"
                )
                (eval_dir / IMAGES / image_id).write_bytes(jpeg)
                label = int(encode(MASK_FILES[stem], p.gender, age_band(p.age)))
                eval_rows.append((image_id, label, p.pid))
            advance()

    with open(train_dir / TRAIN_CSV, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for p in train:
            writer.writerow([p.pid, GENDER_NAMES[p.gender], p.race, p.age, folder_name(p)])
    if eval_people:
        order = np.random.default_rng([seed, 1, 2]).permutation(len(eval_rows))
        rows = [eval_rows[i] for i in order]
        with open(eval_dir / INFO_CSV, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(EVAL_COLUMNS)
            writer.writerows((image_id, "") for image_id, _, _ in rows)
        with open(eval_dir / SOLUTION_CSV, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            # person: held-out scores are bootstrapped over people, not images
            writer.writerow(SOLUTION_COLUMNS)
            writer.writerows(rows)

    summary = {
        "people": people,
        "eval_people": eval_people,
        "train_images": people * len(PHOTO_STEMS),
        "eval_images": len(eval_rows),
        "size": f"{size[0]}x{size[1]}",
        "seed": seed,
        "female": sum(p.gender for p in train),
        "age_bands": [sum(age_band(p.age) == b for p in train) for b in range(3)],
        "classes": [classes.get(c, 0) for c in range(NUM_CLASSES)],
        "train_ids": [p.pid for p in train],
        "eval_ids": [p.pid for p in evals],
    }
    marker = {"maskopt": maskopt.__version__, **{k: summary[k] for k in MARKED}}
    atomic_write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")
    return summary


def folder_name(p: Person) -> str:
    """`{id}_{gender}_{race}_{age}`, the competition's folder name."""
    return f"{p.pid}_{GENDER_NAMES[p.gender]}_{p.race}_{p.age}"
