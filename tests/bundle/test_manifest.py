"""Bundle manifest writing/reading and atomic building (prediction is tested in test_export)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from maskopt.bundle.manifest import (
    BUNDLE,
    MANIFEST,
    Manifest,
    Member,
    is_bundle,
    read_manifest,
    write_manifest,
)
from maskopt.errors import DataError
from maskopt.outputs import OutputError, replace_dir


def staging(out: Path):
    return replace_dir(out, BUNDLE)


def make_manifest(folder: Path, checkpoints=("models/t3.pt",)) -> Manifest:
    for ck in checkpoints:
        (folder / ck).parent.mkdir(parents=True, exist_ok=True)
        (folder / ck).write_bytes(b"weights")
    member = Member(
        trial=3,
        weight=1.0,
        config={"backbone": "resnet10t", "image_size": 32},
        checkpoints=tuple(checkpoints),
        oof_f1=0.5,
        retrained=True,
        epochs=2,
    )
    return Manifest(
        study="s",
        vote="soft",
        tta=False,
        crop="center",
        members=(member,),
        oof_f1=0.5,
        data_fingerprint="abc",
        versions={"maskopt": "0.1.0"},
        data="/somewhere/data",
        choice={"decision": "best single trial 3 exported: test"},
        notes=["a note"],
    )


def test_manifest_round_trip(tmp_path: Path) -> None:
    m = make_manifest(tmp_path)
    write_manifest(tmp_path, m)
    assert is_bundle(tmp_path)
    assert read_manifest(tmp_path) == m
    assert json.loads((tmp_path / MANIFEST).read_text())["members"][0]["trial"] == 3


def test_not_a_bundle(tmp_path: Path) -> None:
    assert not is_bundle(tmp_path)
    with pytest.raises(DataError, match="not a maskopt bundle"):
        read_manifest(tmp_path)


def test_missing_checkpoint_and_bad_vote_are_listed(tmp_path: Path) -> None:
    m = make_manifest(tmp_path)
    write_manifest(tmp_path, Manifest(**{**m.__dict__, "vote": "median"}))
    (tmp_path / "models/t3.pt").unlink()
    with pytest.raises(DataError) as err:
        read_manifest(tmp_path)
    assert "checkpoint models/t3.pt is missing" in str(err.value)
    assert "vote is 'median'" in str(err.value)


def test_wrong_format_and_garbage(tmp_path: Path) -> None:
    m = make_manifest(tmp_path)
    write_manifest(tmp_path, Manifest(**{**m.__dict__, "format": 99}))
    with pytest.raises(DataError, match="format is 99"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text('{"study": 1}')
    with pytest.raises(DataError, match="does not describe a bundle"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_staging_renames_into_place_and_replaces_old(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with staging(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".bundle.maskopt-new-")
        write_manifest(tmp, make_manifest(tmp))
        assert not out.exists()
    assert is_bundle(out)
    with staging(out) as tmp:
        write_manifest(tmp, make_manifest(tmp, checkpoints=("models/t4.pt",)))
    assert (out / "models" / "t4.pt").exists() and not (out / "models" / "t3.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    # a folder that is not a bundle (here: one file of the user's beside a bundle) is refused
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        with staging(out):
            pass
    assert (out / "notes.txt").read_text() == "mine"


def test_interrupted_staging_leaves_the_old_bundle_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with staging(out) as tmp:
        write_manifest(tmp, make_manifest(tmp))
    with pytest.raises(KeyboardInterrupt):
        with staging(out) as tmp:
            (tmp / "half.pt").write_bytes(b"x")
            raise KeyboardInterrupt
    assert read_manifest(out).study == "s"
    assert not (out / "half.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    # a first export that fails leaves nothing that looks like a bundle
    with pytest.raises(RuntimeError):
        with staging(tmp_path / "other") as tmp:
            raise RuntimeError("boom")
    assert not (tmp_path / "other").exists()


def test_a_format_1_bundle_still_reads(tmp_path: Path) -> None:
    m = make_manifest(tmp_path)
    raw = {
        **{k: v for k, v in asdict(m).items() if k in ("study", "vote", "tta", "crop", "oof_f1")},
        "members": asdict(m)["members"],
        "data_fingerprint": "abc",
        "versions": {},
        "info": {"data": "/old/data", "notes": ["old note"], "heldout_f1": 0.5},
        "format": 1,
    }
    (tmp_path / MANIFEST).write_text(json.dumps(raw))
    old = read_manifest(tmp_path)
    assert old.members == m.members and old.data == "/old/data" and old.notes == ["old note"]


def test_heldout_interval_resamples_people_when_known_else_images() -> None:
    from maskopt.bundle.predict import Prediction
    from maskopt.trainer.metrics import macro_f1

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 18, 70)
    probs = rng.dirichlet(np.ones(18), 70).astype(np.float32)
    probs[np.arange(0, 70, 2), truth[::2]] = 2.0  # every other image right
    people = np.repeat(np.arange(10), 7)
    ids = [f"e{i}.jpg" for i in range(70)]

    by_people = Prediction(ids, probs, truth, people).heldout
    by_images = Prediction(ids, probs, truth).heldout
    assert by_people is not None and by_images is not None
    assert (by_people.unit, by_people.n_units) == ("people", 10)
    assert (by_images.unit, by_images.n_units) == ("images", 70)
    f1 = macro_f1(truth, probs.argmax(1))
    for iv in (by_people, by_images):
        assert iv.value == pytest.approx(f1) and iv.low <= iv.value <= iv.high
    assert "bootstrap over 10 people]" in str(by_people)
    assert Prediction(ids, probs, truth, people).heldout_f1 == pytest.approx(f1)
    no_truth = Prediction(ids, probs)
    assert no_truth.heldout is None and no_truth.heldout_f1 is None


def test_recorded_data_dir(tmp_path: Path) -> None:
    from dataclasses import replace

    from maskopt.bundle.manifest import recorded_data_dir

    m = make_manifest(tmp_path)
    assert recorded_data_dir(replace(m, data="")) is None
    assert recorded_data_dir(replace(m, data=str(tmp_path))) == tmp_path
