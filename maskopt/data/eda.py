"""Exploratory data analysis of a train set: what a person should look at before a search.

One pass over the original files reads each image's header (size, format) and
decodes it once at a small size (JPEG draft mode decodes 1/4 or 1/8 of the pixels, so
18,900 photos take seconds). From that small copy come:

- a 64-bit difference hash (dHash) and a standardised 24x32 thumbnail: pairs whose
  hashes are close are compared by thumbnail, and the same picture (also re-encoded,
  resized or re-exposed) is grouped as a duplicate;
- a lower-face descriptor (where a mask sits, in the competition centre crop) for label
  checks: a linear model, trained out of fold by person on what changes between a
  person's own photos, says which mask state each photo shows; a `normal` photo it
  takes for a worn mask, or an `incorrect_mask` photo it takes for no mask, is listed
  with its file, for a person to look at.

The report is one self-contained HTML file (plotly.js inline) with the charts and the
lists; `run_eda` returns the numbers for the CLI's tables.
"""

from __future__ import annotations

import dataclasses
import html
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskopt.data.labels import (
    AGE_NAMES,
    CLASS_NAMES,
    GENDER_NAMES,
    MASK_NAMES,
    NUM_CLASSES,
    age_band,
    decode,
)
from maskopt.data.layout import IMAGES, TRAIN, TrainSet, read_train
from maskopt.outputs import atomic_write_text, check_file_out
from maskopt.progress import progress_bar

SMALL = (48, 64)  # width x height of the decoded copy: enough for hashes and the lower face
HASH_BITS = 12  # of 64: dHash distance below which two photos are compared closely
SAME_IMAGE = 0.05  # mean |difference| of standardised thumbnails: re-encoded copies ~0.01,
# two photos of one person in one session 0.1 and up
# A photo is flagged when the check's model gives its filed mask state at most this
# probability and finds another state the most likely (out of fold, like cleanlab's
# self-confidence). On 150 clean synthetic people (seed 0) it lists none; on harder
# photos expect some false alarms: a list to look through, not a verdict.
FLAG_PROB = 0.05


@dataclass(frozen=True)
class ImageInfo:
    """What one pass over a file gives."""

    size: tuple[int, int]  # (width, height) from the header
    fmt: str  # JPEG, PNG, ...
    nbytes: int
    dhash: int  # 64-bit difference hash
    thumb: np.ndarray  # (32, 24) float32 standardised grey thumbnail (duplicate check)
    face: np.ndarray  # (240,) float32 lower-face descriptor (label checks)


def _centre_crop(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    cw, ch = w * 2 // 3, h * 5 // 8  # the competition's 256x320 of 384x512
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return rgb[y0 : y0 + ch, x0 : x0 + cw]


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return (x - x.mean()) / (x.std() + 1.0)


def dhash64(grey: Image.Image) -> int:
    """64-bit difference hash: is each of 9x8 cells brighter than its left neighbour."""
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def lower_face(rgb: np.ndarray) -> np.ndarray:
    """The lower middle of the centre crop (where a mask sits), 8 wide x 10 high in colour,
    standardised by the whole crop so light and exposure drop out."""
    crop = _centre_crop(rgb)
    ch, cw = crop.shape[:2]
    region = crop[int(0.4 * ch) : int(0.9 * ch), int(0.15 * cw) : int(0.85 * cw)]
    small = np.asarray(Image.fromarray(region).resize((8, 10), Image.Resampling.BOX), np.float32)
    crop = crop.astype(np.float32)
    return ((small - crop.mean()) / (crop.std() + 1.0)).ravel()


def read_image_info(path: Path) -> ImageInfo:
    """Header, hash, thumbnail and descriptor of one image, decoding it once, small."""
    with Image.open(path) as im:
        size, fmt = im.size, im.format or path.suffix.lstrip(".").upper()
        im.draft("RGB", (SMALL[0] * 2, SMALL[1] * 2))  # JPEG: decode at a reduced scale
        small = im.convert("RGB").resize(SMALL, Image.Resampling.BILINEAR)
    grey = small.convert("L")
    return ImageInfo(
        size=size,
        fmt=fmt,
        nbytes=path.stat().st_size,
        dhash=dhash64(grey),
        thumb=_standardise(np.asarray(grey.resize((24, 32), Image.Resampling.BOX))),
        face=lower_face(np.asarray(small)),
    )


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x[..., None].view(np.uint8), axis=-1).sum(-1)  # numpy < 2


def duplicate_groups(
    hashes: np.ndarray, thumbs: np.ndarray, max_bits: int = HASH_BITS, max_diff: float = SAME_IMAGE
) -> list[list[int]]:
    """Groups (connected components) of the same picture: dHashes within `max_bits`, then
    standardised thumbnails within `max_diff` (so a re-encoded, resized or re-exposed copy
    matches; two shots of a person in the same pose do not). A blocked scan over all pairs of
    64-bit hashes: 18,900 images in a couple of seconds."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.asarray(hashes, dtype=np.uint64)
    for start in range(0, n, 1024):
        d = _popcount(hashes[start : start + 1024, None] ^ hashes[None, :])
        rows, cols = np.nonzero(d <= max_bits)
        for i, j in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if i < j and np.abs(thumbs[i] - thumbs[j]).mean() <= max_diff:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def mask_state_probs(faces: np.ndarray, masks: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
    """Out-of-fold probability of each mask state for every photo, from a linear model on
    the lower-face descriptor minus the person's own mean (so skin, hair and room drop
    out and what changes between a person's photos, the mask, is left). Folds group by
    person, so a photo is judged by a model that never saw that person. None when there
    are too few people to fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    people = np.unique(groups)
    if len(people) < 4 or len(np.unique(masks)) < 3:
        return None
    rel = faces.astype(np.float32).copy()
    for p in people:
        rows = groups == p
        rel[rows] -= faces[rows].mean(axis=0)
    model = LogisticRegression(C=0.1, max_iter=300, tol=1e-3)  # tol: 3x faster, same flags
    cv = GroupKFold(n_splits=min(5, len(people)))
    return cross_val_predict(model, rel, masks, groups=groups, cv=cv, method="predict_proba")


@dataclass(frozen=True)
class Flag:
    """A photo to look at, and why."""

    person: str
    folder: str  # the person's folder under train/images
    file: str
    check: str  # what looks wrong
    prob: float  # how sure the check is (1.0: the same picture filed twice)


@dataclass(frozen=True)
class EdaSummary:
    """What `run_eda` found (counts of images unless named people_*)."""

    images: int
    people: int
    skipped_people: int
    classes: list[int]  # per class
    mask: list[int]  # per mask state
    gender: list[int]
    age: list[int]  # per age band
    people_gender: list[int]
    people_age: list[int]
    sizes: dict[str, int]  # "WxH" -> images
    formats: dict[str, int]
    duplicates: list[list[str]]  # groups of paths relative to train/images
    flags: list[Flag]
    mask_check_confusion: list[list[int]] | None  # filed as x looks like y (None: < 4 people)
    html: str
    root: str
    seconds: float = 0.0


def label_flags(records: Sequence, probs: np.ndarray | None) -> list[Flag]:
    """Photos to look at: a `normal` photo the model takes for a worn mask, an
    `incorrect_mask` photo it takes for no mask (the filed state at most FLAG_PROB)."""
    if probs is None:
        return []
    checks = {
        2: (0, "normal looks like a worn mask"),
        1: (2, "incorrect_mask looks like no mask (normal)"),
    }
    flags = []
    for r, p in zip(records, probs, strict=True):
        if r.mask in checks:
            other, what = checks[r.mask]
            if p[r.mask] <= FLAG_PROB and p.argmax() == other:
                flags.append(
                    Flag(r.person, r.path.parent.name, r.path.name, what, round(float(p[other]), 3))
                )
    return sorted(flags, key=lambda f: -f.prob)


def same_picture_flags(records: Sequence, groups: list[list[int]]) -> list[Flag]:
    """One picture filed under two mask states of one person: one of the labels is wrong."""
    flags = []
    for group in groups:
        for i in group:
            r = records[i]
            other = [
                records[j].path.name
                for j in group
                if records[j].person == r.person and records[j].mask != r.mask
            ]
            if other and r.mask != 0:  # name the normal / incorrect file, the rarer label
                flags.append(
                    Flag(
                        r.person,
                        r.path.parent.name,
                        r.path.name,
                        f"same picture as {', '.join(other)}",
                        1.0,
                    )
                )
    return flags


def _scan(paths: Sequence[Path], progress: bool) -> list[ImageInfo]:
    workers = min(4, os.cpu_count() or 1)  # PIL decodes outside the GIL
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(read_image_info, paths, chunksize=64)
        with progress_bar(enabled=progress) as bar:
            return list(bar.track(it, total=len(paths), description="reading images"))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root / TRAIN / IMAGES).as_posix()
    except ValueError:
        return str(path)


def write_eda(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    skip_bad: bool = False,
    progress: bool = True,
) -> EdaSummary:
    """`maskopt eda`: read the data folder and write its HTML report to `out` (a file, replaced
    atomically; checked before the data is read)."""
    out = check_file_out(out)
    return run_eda(read_train(Path(data_dir), skip_bad=skip_bad), out, progress=progress)


def run_eda(ds: TrainSet, out_html: Path, *, progress: bool = False) -> EdaSummary:
    """Analyse `ds`, write the HTML report to `out_html` and return the numbers."""
    start = time.perf_counter()
    out_html = Path(out_html)
    records = ds.records
    labels = ds.labels()
    infos = _scan([r.path for r in records], progress)

    classes = np.bincount(labels, minlength=NUM_CLASSES)
    person_rows = {r.person: r for r in records}
    ages = np.array([r.age for r in person_rows.values()], dtype=np.int64)
    genders = np.array([r.gender for r in person_rows.values()], dtype=np.int64)

    hashes = np.array([i.dhash for i in infos], dtype=np.uint64)
    thumbs = np.stack([i.thumb for i in infos]) if infos else np.zeros((0, 32, 24), np.float32)
    dup_index = duplicate_groups(hashes, thumbs)
    groups = [[_rel(records[i].path, ds.root) for i in g] for g in dup_index]

    faces = np.stack([i.face for i in infos]) if infos else np.zeros((0, 240), np.float32)
    masks = np.array([r.mask for r in records], dtype=np.int64)
    probs = mask_state_probs(faces, masks, ds.groups()) if len(records) else None
    flags = same_picture_flags(records, dup_index) + label_flags(records, probs)
    confusion = (
        np.bincount(masks * 3 + probs.argmax(1), minlength=9).reshape(3, 3).tolist()
        if probs is not None
        else None
    )

    mask, gender, age = decode(labels)
    n_age = len(AGE_NAMES)
    summary = EdaSummary(
        images=len(records),
        people=len(person_rows),
        skipped_people=ds.skipped_people,
        classes=classes.tolist(),
        mask=np.bincount(mask, minlength=len(MASK_NAMES)).tolist(),
        gender=np.bincount(gender, minlength=len(GENDER_NAMES)).tolist(),
        age=np.bincount(age, minlength=n_age).tolist(),
        people_gender=np.bincount(genders, minlength=len(GENDER_NAMES)).tolist(),
        people_age=np.bincount(age_band(ages), minlength=n_age).tolist()
        if len(ages)
        else [0] * n_age,
        sizes=dict(Counter(f"{i.size[0]}x{i.size[1]}" for i in infos).most_common()),
        formats=dict(Counter(i.fmt for i in infos).most_common()),
        duplicates=groups,
        flags=flags,
        mask_check_confusion=confusion,  # rows: filed as; columns: looks like
        html=str(out_html),
        root=str(ds.root),
    )
    _write_html(out_html, summary, ages, genders, np.array([i.nbytes for i in infos]))
    return dataclasses.replace(summary, seconds=round(time.perf_counter() - start, 2))


# ---------------------------------------------------------------------------- report


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _write_html(
    path: Path, s: EdaSummary, ages: np.ndarray, genders: np.ndarray, nbytes: np.ndarray
) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs: list[tuple[str, go.Figure]] = []
    colours = ["#2a9d8f", "#e9c46a", "#e76f51"]  # one per mask state
    classes = go.Figure(
        go.Bar(
            x=list(CLASS_NAMES),
            y=s.classes,
            marker_color=[colours[decode(c)[0]] for c in range(NUM_CLASSES)],
        )
    )
    classes.update_layout(
        title=f"Images per class ({NUM_CLASSES})", xaxis_tickangle=-45, height=450
    )
    figs.append(("classes", classes))

    parts = make_subplots(rows=1, cols=3, subplot_titles=("mask", "gender", "age band"))
    parts.add_trace(go.Bar(x=list(MASK_NAMES), y=s.mask, marker_color=colours), 1, 1)
    parts.add_trace(go.Bar(x=list(GENDER_NAMES), y=s.gender), 1, 2)
    parts.add_trace(go.Bar(x=list(AGE_NAMES), y=s.age), 1, 3)
    parts.update_layout(title="Images by mask, gender and age band", showlegend=False, height=380)
    figs.append(("labels", parts))

    people = go.Figure()
    for g, name in enumerate(GENDER_NAMES):
        people.add_trace(go.Histogram(x=ages[genders == g], name=name, xbins={"size": 1}))
    people.update_layout(
        title="People by age (years) and gender", barmode="stack", xaxis_title="age", height=380
    )
    figs.append(("ages", people))

    sizes = make_subplots(rows=1, cols=2, subplot_titles=("image size (W x H)", "file size (KB)"))
    sizes.add_trace(go.Bar(x=list(s.sizes), y=list(s.sizes.values())), 1, 1)
    sizes.add_trace(go.Histogram(x=nbytes / 1024, nbinsx=40), 1, 2)
    sizes.update_layout(title="Image sizes", showlegend=False, height=380)
    figs.append(("sizes", sizes))

    if s.mask_check_confusion is not None:
        checks = go.Figure(
            go.Heatmap(
                z=s.mask_check_confusion,
                x=[f"looks {m}" for m in MASK_NAMES],
                y=[f"filed {m}" for m in MASK_NAMES],
                text=s.mask_check_confusion,
                texttemplate="%{text}",
                colorscale="Blues",
            )
        )
        checks.update_layout(
            title="Label check: mask state filed (file name) against the state the photo "
            "looks like (linear model on the lower face, out of fold by person)",
            yaxis_autorange="reversed",
            height=400,
        )
        figs.append(("checks", checks))

    charts = [
        f'<div class="chart" id="chart-{name}">'
        + fig.to_html(full_html=False, include_plotlyjs=(i == 0))
        + "</div>"
        for i, (name, fig) in enumerate(figs)
    ]
    dup_rows = [(i + 1, len(g), ", ".join(g)) for i, g in enumerate(s.duplicates)]
    flag_rows = [(f.folder, f.file, f.check, f.prob) for f in s.flags]
    overview = _table(
        ["images", "people", "skipped people", "female people", "sizes", "formats"],
        [
            (
                s.images,
                s.people,
                s.skipped_people,
                s.people_gender[1],
                ", ".join(f"{k}: {v}" for k, v in s.sizes.items()),
                ", ".join(f"{k}: {v}" for k, v in s.formats.items()),
            )
        ],
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>maskopt EDA</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:left;font-size:90%}}</style></head><body>
<h1>maskopt EDA: {html.escape(str(s.root))}</h1>
{overview}
{"".join(charts)}
<h2>Duplicate images ({len(s.duplicates)} groups)</h2>
<p>The same picture under more than one name (dHash within {HASH_BITS} of 64 bits, then
standardised thumbnails within {SAME_IMAGE}).</p>
{_table(["group", "images", "files"], dup_rows) if dup_rows else "<p>none found</p>"}
<h2>Photos to check ({len(s.flags)})</h2>
<p>Photos whose file name says one mask state while a model trained on the other people
gives that state at most {FLAG_PROB} and finds another the most likely: a mask photo filed
as <code>normal</code>, or a <code>normal</code> photo filed as <code>incorrect_mask</code>?</p>
{_table(["folder", "file", "check", "probability"], flag_rows) if flag_rows else "<p>none</p>"}
</body></html>
"""
    atomic_write_text(path, page)
