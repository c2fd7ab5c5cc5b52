"""Reading and validating the competition layout.

    DATA/train/train.csv         id,gender,race,age,path   (one row a person)
    DATA/train/images/<path>/    mask1..mask5, incorrect_mask, normal (.jpg/.jpeg/.png)
    DATA/eval/info.csv           ImageID,ans
    DATA/eval/images/<ImageID>
    DATA/eval/solution.csv       ImageID,ans[,person]: the true classes (synthetic sets only)
                                 and, when there, whose photo it is (held-out intervals
                                 resample people; without the column, images)

Bad input is collected, not thrown one at a time: `read_train` checks every person and
every file (a cheap header check, not a full decode) and raises one `DataError` listing
each problem with its file, or with ``skip_bad=True`` drops the people that have one.
Without train.csv the people come from the folder names ``{id}_{gender}_{race}_{age}``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskopt.data.cache import default_cache_dir, load_cache
from maskopt.data.crop import check_crop
from maskopt.data.labels import GENDER_CODES, MASK_FILES, OLD_AGE, age_band, encode
from maskopt.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_DATA = Path("data")  # where every command looks for the data folder unless told
# The layout's names (the one place they are written; synth writes them, the export's
# submission takes info.csv's columns).
TRAIN, EVAL, IMAGES = "train", "eval", "images"  # DATA/train/, DATA/eval/, .../images/
TRAIN_CSV, INFO_CSV, SOLUTION_CSV = "train.csv", "info.csv", "solution.csv"
CSV_COLUMNS = ("id", "gender", "race", "age", "path")  # train.csv
IMAGE_ID, ANSWER, PERSON = "ImageID", "ans", "person"
EVAL_COLUMNS = (IMAGE_ID, ANSWER)  # info.csv, and a submission
SOLUTION_COLUMNS = (IMAGE_ID, ANSWER, PERSON)  # solution.csv (person: optional)
SUBMISSION = "submission.csv"
MAX_AGE = 120
_EXPECTED_FILES = "mask1..mask5, incorrect_mask, normal as .jpg/.jpeg/.png"
_MAX_LISTED = 200  # problems shown in full; a broken copy of 18,900 files would flood the terminal


@dataclass(frozen=True)
class Record:
    path: Path  # absolute path of the image file
    person: str  # person id from train.csv (or the folder name's id)
    mask: int  # 0 wear / 1 incorrect / 2 not worn (from the file stem, labels.MASK_FILES)
    gender: int  # 0 male / 1 female
    age: int  # years

    def label(self, old_age: int = OLD_AGE) -> int:
        return int(encode(self.mask, self.gender, age_band(self.age, old_age)))


# JPEG start-of-frame markers (they hold the size); C4, C8 and CC are other segments.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_ok(path: Path) -> bool:
    """Fast path for the common case: a JPEG whose markers lead to a frame header of at
    least 8x8 and whose tail holds the end-of-image marker. False means "look closer"."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                return False
            for _ in range(64):  # header segments before the frame: APPn, DQT, DHT, COM
                head = f.read(4)
                if len(head) < 4 or head[0] != 0xFF or head[1] == 0xFF:
                    return False  # fill bytes or a cut file: let PIL judge
                marker, length = head[1], int.from_bytes(head[2:], "big")
                if marker in _SOF:
                    frame = f.read(5)
                    if len(frame) < 5 or min(frame[1:3], frame[3:5]) < b"\x00\x08":
                        return False
                    f.seek(0, 2)
                    f.seek(max(0, f.tell() - 4096))
                    return b"\xff\xd9" in f.read()
                f.seek(length - 2, 1)
    except OSError:
        return False
    return False


def _check_image(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None. Cheap: header parse + end marker, no decode."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() != ".png" and _jpeg_ok(path):
        return None

    try:
        with open(path, "rb") as f:
            with Image.open(f, formats=("JPEG", "PNG")) as im:
                fmt, (w, h) = im.format, im.size
                if fmt == "PNG":
                    im.verify()  # checks every chunk's CRC: catches a damaged PNG
            if w < 8 or h < 8:
                return f"image is only {w}x{h}"
            if fmt != "PNG":
                # A cut-off JPEG parses, but its end-of-image marker is gone (decoders then
                # fill the rest with grey, silently). Tools may append bytes after it.
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 4096))
                if b"\xff\xd9" not in f.read():
                    return "truncated JPEG (no end-of-image marker)"
    except UnidentifiedImageError:
        return "not a JPEG or PNG image (unreadable or corrupt)"
    except (FileNotFoundError, PermissionError) as err:
        return f"cannot read ({err.strerror})"
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt image ({err})"
    return None


def _check_images(paths: Sequence[Path]) -> list[str | None]:
    # I/O bound (open + seek): threads overlap the waits on a cold disk.
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(_check_image, paths, chunksize=64))


@dataclass
class _Person:
    folder: str  # folder name under train/images
    pid: str
    gender: int
    age: int
    where: str  # how problems name this person: "train.csv line 3 (...)" or "images/<folder>"


def _people_from_csv(
    csv_path: Path, images: Path, problems: dict[str, list[str]], unlisted: set[str]
) -> list[_Person]:
    people: list[_Person] = []
    rows = _read_csv(csv_path, CSV_COLUMNS)
    listed = set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"train.csv line {n} ({row.get('path') or row.get('id')})"
        folder = (row["path"] or "").strip()
        bad = []
        gender = GENDER_CODES.get((row["gender"] or "").strip().lower())
        if gender is None:
            bad.append(f"gender {row['gender']!r} is not male or female")
        age = _parse_age(row["age"], bad)
        if not folder:
            bad.append("empty path")
        elif not (images / folder).is_dir():
            bad.append(f"folder images/{folder} is missing")
        listed.add(folder)
        key = folder or where
        if bad:
            problems.setdefault(key, []).extend(f"{where}: {b}" for b in bad)
        people.append(_Person(folder, (row["id"] or "").strip(), gender or 0, age or 0, where))
    for d in _person_dirs(images):
        if d.name not in listed:
            unlisted.add(d.name)
            problems.setdefault(d.name, []).append(
                f"images/{d.name}: folder is not in train.csv (renamed? add a row or remove it)"
            )
    return people


def _parse_age(text: str | None, bad: list[str]) -> int | None:
    try:
        age = int((text or "").strip())
    except ValueError:
        bad.append(f"age {text!r} is not a number")
        return None
    if not 0 <= age <= MAX_AGE:
        bad.append(f"age {age} is outside 0..{MAX_AGE}")
        return None
    return age


def _person_dirs(images: Path) -> list[Path]:
    # hidden entries (.DS_Store, ._mask1.jpg, .ipynb_checkpoints) are OS litter, not data
    return sorted(d for d in images.iterdir() if d.is_dir() and not d.name.startswith("."))


def _people_from_folders(images: Path, problems: dict[str, list[str]]) -> list[_Person]:
    people = []
    for d in _person_dirs(images):
        parts = d.name.split("_")
        where = f"images/{d.name}"
        if len(parts) < 4:
            problems.setdefault(d.name, []).append(
                f"{where}: folder name does not parse as {{id}}_{{gender}}_{{race}}_{{age}}"
            )
            continue
        bad: list[str] = []
        gender = GENDER_CODES.get(parts[1].lower())
        if gender is None:
            bad.append(f"gender {parts[1]!r} is not male or female")
        age = _parse_age(parts[-1], bad)
        if bad:
            problems.setdefault(d.name, []).extend(f"{where}: {b}" for b in bad)
            continue
        people.append(_Person(d.name, parts[0], gender or 0, age or 0, where))
    return people


def _person_files(images: Path, person: _Person, problems: dict[str, list[str]]) -> dict[str, Path]:
    """stem -> file of one person's 7 photos; missing, extra and doubled files are problems."""
    folder = images / person.folder
    found: dict[str, Path] = {}
    bad = []
    if not folder.is_dir():
        return found
    # os.scandir: names and file types without a stat per file (18,900 files per read)
    with os.scandir(folder) as entries:
        listing = sorted((e.name, e.is_file()) for e in entries if not e.name.startswith("."))
    for name, is_file in listing:
        stem, suffix = os.path.splitext(name)
        if stem not in MASK_FILES or suffix.lower() not in IMAGE_SUFFIXES or not is_file:
            bad.append(f"extra file {name} (expected {_EXPECTED_FILES})")
        elif stem in found:
            bad.append(f"two files for {stem}: {found[stem].name} and {name}")
        else:
            found[stem] = folder / name
    bad += [f"missing {stem} image" for stem in MASK_FILES if stem not in found]
    if bad:
        problems.setdefault(person.folder, []).extend(f"images/{person.folder}: {b}" for b in bad)
    return found


def _raise_or_skip(problems: dict[str, list[str]], what: str, skip_bad: bool) -> None:
    if not problems or skip_bad:
        return
    lines = [line for key in sorted(problems) for line in problems[key]]
    shown = lines[:_MAX_LISTED]
    if len(lines) > _MAX_LISTED:
        shown.append(f"... and {len(lines) - _MAX_LISTED} more")
    raise DataError(
        f"{what}: {len(lines)} problem(s) (fix them, or pass --skip-bad to leave those people out)",
        shown,
    )


class TrainSet:
    """The train images of a data folder: one `Record` each, sorted by (person folder, stem)."""

    def __init__(
        self,
        root: Path,
        records: list[Record],
        crop: str = "center",
        cache_dir: Path | None = None,
        skipped_people: int = 0,
        progress: bool = True,
    ) -> None:
        self.root = Path(root)
        self.records = records
        self.crop = check_crop(crop)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.skipped_people = skipped_people
        self.progress = progress
        self.crop_fallbacks: dict[int, int] = {}  # image_size -> images with no face (--crop face)
        self._images: dict[int, np.ndarray] = {}
        self._parent: tuple[TrainSet, np.ndarray] | None = None  # set by subset()

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        n, people = len(self.records), self.n_people
        return f"TrainSet({self.root}, {n} images, {people} people, crop={self.crop!r})"

    @property
    def n_people(self) -> int:
        return len({r.person for r in self.records})

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in self.records]

    def labels(self, old_age: int = OLD_AGE) -> np.ndarray:
        """int64 (N,) class of each image, with the top age band from ``old_age``."""
        mask = np.array([r.mask for r in self.records], dtype=np.int64)
        gender = np.array([r.gender for r in self.records], dtype=np.int64)
        age = np.array([r.age for r in self.records], dtype=np.int64)
        return encode(mask, gender, age_band(age, old_age))

    def groups(self) -> np.ndarray:
        """int64 (N,) person index: the 7 photos of a person share one."""
        index: dict[str, int] = {}
        return np.array(
            [index.setdefault(r.person, len(index)) for r in self.records], dtype=np.int64
        )

    def strata(self) -> np.ndarray:
        """int64 (N,) gender*3 + true age band (always old_age=60): what folds stratify on."""
        gender = np.array([r.gender for r in self.records], dtype=np.int64)
        age = np.array([r.age for r in self.records], dtype=np.int64)
        return gender * 3 + age_band(age, OLD_AGE)

    def fingerprint(self) -> str:
        """Hash of relative paths, file sizes and labels: same data -> same folds and studies."""
        h = hashlib.sha256()
        for r in self.records:
            rel = (
                r.path.relative_to(self.root).as_posix()
                if r.path.is_relative_to(self.root)
                else r.path.name
            )
            h.update(
                f"{rel}|{r.path.stat().st_size}|{r.person}|{r.mask}|{r.gender}|{r.age}\n".encode()
            )
        return h.hexdigest()[:16]

    def images(self, image_size: int) -> np.ndarray:
        """(N, 5W/4, W, 3) uint8 from the decoded cache, built on first use, memoised per size."""
        if image_size not in self._images:
            if self._parent is not None:
                parent, idx = self._parent
                self._images[image_size] = parent.images(image_size)[idx]
                self.crop_fallbacks[image_size] = parent.crop_fallbacks.get(image_size, 0)
            else:
                cache_dir = self.cache_dir or default_cache_dir(self.root)
                arr, info = load_cache(
                    self.paths, image_size, self.crop, cache_dir, self.progress, name="train"
                )
                self._images[image_size] = arr
                self.crop_fallbacks[image_size] = info.fallbacks
                _log_fallbacks(info.fallbacks, info.n, self.crop)
        return self._images[image_size]

    def subset(self, idx: Sequence[int] | np.ndarray) -> TrainSet:
        """The images at ``idx`` (for tests and tools); images() come from this set's cache."""
        idx = np.asarray(idx, dtype=np.int64)
        sub = TrainSet(
            self.root, [self.records[i] for i in idx], self.crop, self.cache_dir, 0, self.progress
        )
        sub._parent = (self, idx)
        return sub


def _log_fallbacks(fallbacks: int, n: int, crop: str) -> None:
    if crop == "face" and fallbacks:
        log.warning(
            "face crop: no face found in %d of %d images; the centre crop was used for them",
            fallbacks,
            n,
        )


def _check_root(data_dir: Path | str) -> Path:
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist (pass --data DIR, or make a synthetic one with "
            f"`maskopt synth {root}`)"
        )
    return root.resolve()


def read_train(
    data_dir: Path | str,
    *,
    skip_bad: bool = False,
    crop: str = "center",
    cache_dir: Path | str | None = None,
    progress: bool = True,
) -> TrainSet:
    """Read and check ``data_dir/train``; a DataError lists every problem found.

    With ``skip_bad`` people with any problem are left out (``TrainSet.skipped_people``).
    Images are decoded only later, by ``TrainSet.images(size)`` (the cache).
    """
    check_crop(crop)
    root = _check_root(data_dir)
    train, images = root / TRAIN, root / TRAIN / IMAGES
    if not images.is_dir():
        where = (
            f"no train/ folder in {root}" if not train.is_dir() else f"no images/ folder in {train}"
        )
        raise DataError(
            f"{where}: expected train/train.csv and train/images/<id>_<gender>_<race>_<age>/"
        )
    problems: dict[str, list[str]] = {}
    unlisted: set[str] = set()  # folders with no train.csv row: reported, never read
    csv_path = train / TRAIN_CSV
    if csv_path.is_file():
        people = _people_from_csv(csv_path, images, problems, unlisted)
    else:
        people = _people_from_folders(images, problems)

    ids = Counter(p.pid for p in people)
    for p in people:
        if not p.pid:
            problems.setdefault(p.folder or p.where, []).append(f"{p.where}: empty id")
        elif ids[p.pid] > 1:
            problems.setdefault(p.folder or p.where, []).append(f"{p.where}: duplicate id {p.pid}")
    folders = Counter(p.folder for p in people)
    for p in people:
        if p.folder and folders[p.folder] > 1:
            problems.setdefault(p.folder, []).append(
                f"{p.where}: folder {p.folder} is listed twice"
            )

    files = {
        p.folder: _person_files(images, p, problems) for p in people if p.folder not in problems
    }
    todo = [(folder, stem, f) for folder, found in files.items() for stem, f in found.items()]
    for (folder, _, f), why in zip(todo, _check_images([f for *_, f in todo]), strict=True):
        if why is not None:
            problems.setdefault(folder, []).append(f"images/{folder}/{f.name}: {why}")

    _raise_or_skip(problems, f"{train}", skip_bad)
    records = [
        Record(
            path=files[p.folder][stem],
            person=p.pid,
            mask=MASK_FILES[stem],
            gender=p.gender,
            age=p.age,
        )
        for p in sorted(people, key=lambda p: p.folder)
        if p.folder not in problems
        for stem in sorted(MASK_FILES)
    ]
    skipped = len(set(problems) - unlisted)
    if not records:
        raise DataError(
            f"no usable people in {images}"
            + (f" ({skipped} skipped for problems)" if skipped else "")
            + f": expected folders <id>_<gender>_<race>_<age>/ with {_EXPECTED_FILES}"
        )
    if skipped or unlisted:
        left_out = [f"{skipped} person(s) with problems"] if skipped else []
        left_out += [f"{len(unlisted)} folder(s) not in train.csv"] if unlisted else []
        log.warning("--skip-bad: left out %s", " and ".join(left_out))
    return TrainSet(root, records, crop, Path(cache_dir) if cache_dir else None, skipped, progress)


class EvalSet:
    """The eval images listed in eval/info.csv, in its order; ``solution`` and ``groups``
    (int64 person index per image, the 7 photos of a person share one; None when
    solution.csv names no people) from solution.csv."""

    def __init__(
        self,
        root: Path,
        image_ids: list[str],
        paths: list[Path],
        solution: np.ndarray | None,
        crop: str = "center",
        cache_dir: Path | None = None,
        progress: bool = True,
        groups: np.ndarray | None = None,
    ) -> None:
        self.root = Path(root)
        self.image_ids = image_ids
        self.paths = paths
        self.solution = solution
        self.groups = groups
        self.crop = check_crop(crop)
        self.cache_dir = cache_dir
        self.progress = progress
        self.crop_fallbacks: dict[int, int] = {}
        self._images: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def images(self, image_size: int) -> np.ndarray:
        """(N, 5W/4, W, 3) uint8 from the decoded cache, in info.csv order."""
        if image_size not in self._images:
            cache_dir = self.cache_dir or default_cache_dir(self.root)
            arr, info = load_cache(
                self.paths, image_size, self.crop, cache_dir, self.progress, name="eval"
            )
            self._images[image_size] = arr
            self.crop_fallbacks[image_size] = info.fallbacks
            _log_fallbacks(info.fallbacks, info.n, self.crop)
        return self._images[image_size]


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file that must have ``columns``; DataError says what was found instead."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            found = list(reader.fieldnames or [])
            missing = [c for c in columns if c not in found]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)}; "
                    f"expected {','.join(columns)}, found {','.join(found) or 'no header'}"
                )
            # a short row gives None for its missing cells: make them empty strings
            return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read ({err})") from None


def read_eval(
    data_dir: Path | str,
    *,
    crop: str = "center",
    cache_dir: Path | str | None = None,
    progress: bool = True,
) -> EvalSet | None:
    """The eval set of ``data_dir`` (None without an eval/ folder); DataError lists problems."""
    check_crop(crop)
    root = _check_root(data_dir)
    folder = root / EVAL
    if not folder.is_dir():
        return None
    info = folder / INFO_CSV
    if not info.is_file():
        raise DataError(f"{folder}: no info.csv (expected columns ImageID,ans)")
    rows = _read_csv(info, (IMAGE_ID,))
    ids = [(r[IMAGE_ID] or "").strip() for r in rows]
    paths = [folder / IMAGES / i for i in ids]
    problems = []
    problems += [f"info.csv line {n}: empty ImageID" for n, i in enumerate(ids, start=2) if not i]
    problems += [
        f"info.csv: ImageID {i} is listed {c} times" for i, c in Counter(ids).items() if i and c > 1
    ]
    exists = [bool(i) and p.is_file() for i, p in zip(ids, paths, strict=True)]
    problems += [f"images/{i}: missing" for i, ok in zip(ids, exists, strict=True) if i and not ok]
    checks = _check_images([p for p, ok in zip(paths, exists, strict=True) if ok])
    present = [p for p, ok in zip(paths, exists, strict=True) if ok]
    problems += [f"images/{p.name}: {why}" for p, why in zip(present, checks, strict=True) if why]
    if not ids:
        problems.append("info.csv lists no images")
    if problems:
        shown = problems[:_MAX_LISTED] + (
            [f"... and {len(problems) - _MAX_LISTED} more"] if len(problems) > _MAX_LISTED else []
        )
        raise DataError(f"{folder}: {len(problems)} problem(s)", shown)
    solution, groups = _read_solution(folder / SOLUTION_CSV, ids)
    cache = Path(cache_dir) if cache_dir else None
    return EvalSet(root, ids, paths, solution, crop, cache, progress, groups)


def require_eval(
    data_dir: Path | str, *, crop: str = "center", cache_dir: Path | str | None = None
) -> EvalSet:
    """The eval set of ``data_dir``; a DataError when there is no eval/ folder."""
    ev = read_eval(data_dir, crop=crop, cache_dir=cache_dir)
    if ev is None:
        raise DataError(f"no eval/ folder in {data_dir} (expected eval/info.csv and eval/images/).")
    return ev


def _read_solution(path: Path, ids: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(true classes, person index) in info.csv order from solution.csv (ImageID, ans and
    an optional person column); (None, None) without the file, groups None without people."""
    if not path.is_file():
        return None, None
    rows = _read_csv(path, EVAL_COLUMNS)
    truth: dict[str, int] = {}
    person: dict[str, str] = {}
    for r in rows:
        image_id = r[IMAGE_ID].strip()
        try:
            truth[image_id] = int(r[ANSWER])
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: ans {r['ans']!r} of {image_id} is not a class 0..17"
            ) from None
        person[image_id] = r.get(PERSON, "").strip()
    missing = [i for i in ids if i not in truth]
    if missing:
        raise DataError(f"{path}: no answer for {len(missing)} image(s), e.g. {missing[0]}")
    out = np.array([truth[i] for i in ids], dtype=np.int64)
    if out.min() < 0 or out.max() > 17:
        raise DataError(f"{path}: classes must be 0..17, found {out.min()}..{out.max()}")
    return out, _person_index(path, [person[i] for i in ids])


def _person_index(path: Path, people: list[str]) -> np.ndarray | None:
    """int64 person index per image (first seen, first numbered); None when no person is
    named (a two-column solution.csv); a DataError when only some are."""
    unnamed = sum(not p for p in people)
    if unnamed == len(people):
        return None
    if unnamed:
        raise DataError(
            f"{path}: person is empty for {unnamed} of {len(people)} image(s); "
            "name the person of every image, or drop the person column"
        )
    index: dict[str, int] = {}
    return np.array([index.setdefault(p, len(index)) for p in people], dtype=np.int64)
