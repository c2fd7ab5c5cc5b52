"""The decoded-image cache: content, reuse, rebuild, atomic writes, one build across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskopt.data.cache import cached_images, load_cache
from maskopt.data.crop import prepare_image
from maskopt.data.layout import read_train
from maskopt.errors import DataError, MaskoptError
from tests.data.test_layout import make_layout, person_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path) -> Path:
    return make_layout(tmp_path / "d", size=(96, 128))


def _npy(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.npy"))


def test_images_are_prepare_image_of_each_file(data) -> None:
    ds = read_train(data, progress=False)
    images = ds.images(32)
    assert images.shape == (28, 40, 32, 3) and images.dtype == np.uint8
    assert isinstance(images, np.memmap) and not images.flags.writeable
    for i in (0, 9, 27):
        np.testing.assert_array_equal(images[i], prepare_image(ds.records[i].path, 32))
    assert ds.images(32) is images  # memoised per size
    assert ds.images(64).shape == (28, 80, 64, 3)
    cache = data / ".maskopt_cache"
    assert len(_npy(cache)) == 2  # one file per crop and size


def test_reused_by_later_runs(data) -> None:
    first = read_train(data, progress=False)
    first.images(32)
    (path,) = _npy(data / ".maskopt_cache")
    mtime = path.stat().st_mtime_ns
    arr, info = load_cache(
        first.paths, 32, "center", data / ".maskopt_cache", progress=False, name="train"
    )
    assert not info.built and info.path == path and info.seconds == 0
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(arr, first.images(32))


def test_rebuilt_when_a_source_changes(data) -> None:
    ds = read_train(data, progress=False)
    before = np.array(ds.images(32))
    (old,) = _npy(data / ".maskopt_cache")
    target = person_dir(data, 1) / "normal.jpg"
    Image.fromarray(np.full((128, 96, 3), 255, np.uint8)).save(target)
    later = time.time() + 5
    os.utime(target, (later, later))  # a new mtime even on coarse-clock filesystems
    ds2 = read_train(data, progress=False)
    after = ds2.images(32)
    (new,) = _npy(data / ".maskopt_cache")  # the stale file is gone
    assert new != old
    i = ds2.paths.index(target)
    assert after[i].min() > 250 and before[i].min() < 250
    others = np.arange(len(ds2)) != i
    np.testing.assert_array_equal(after[others], before[others])


def test_cache_dir_option_keeps_the_data_folder_clean(data, tmp_path) -> None:
    ds = read_train(data, cache_dir=tmp_path / "elsewhere", progress=False)
    ds.images(32)
    assert len(_npy(tmp_path / "elsewhere")) == 1
    assert not (data / ".maskopt_cache").exists()


def test_face_and_center_are_separate_caches(data) -> None:
    center = read_train(data, progress=False).images(32)
    face = read_train(data, crop="face", progress=False)
    np.testing.assert_array_equal(face.images(32), center)  # noise: no face, all fall back
    assert face.crop_fallbacks[32] == 28
    names = sorted(p.name.split("_")[1] for p in _npy(data / ".maskopt_cache"))
    assert names == ["center", "face", "faceboxes"]  # + the face boxes, kept for other sizes


def test_a_failed_build_leaves_no_half_cache(data) -> None:
    ds = read_train(data, progress=False)
    (person_dir(data, 2) / "mask4.jpg").write_bytes(b"garbage after the data was read")
    with pytest.raises(DataError, match="mask4.jpg: not a readable image"):
        ds.images(32)
    assert list((data / ".maskopt_cache").glob("*.npy")) == []


def test_unwritable_cache_dir_is_a_clear_error(data) -> None:
    blocker = data / "a_file"
    blocker.write_text("not a folder")
    ds = read_train(data, cache_dir=blocker / "cache", progress=False)
    with pytest.raises(MaskoptError, match="cannot write the image cache .* pass --cache DIR"):
        ds.images(32)


def test_cached_images_without_a_trainset(tmp_path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((50, 40, 3), 60 * i, np.uint8)).save(paths[-1])
    arr = cached_images(paths, 16, "center", tmp_path / "c", progress=False)
    assert arr.shape == (3, 20, 16, 3) and arr[:, 0, 0, 0].tolist() == [0, 60, 120]


# --- real processes: the file lock and the atomic rename ------------------------------

WORKER = """
import hashlib, json, sys, time
import numpy as np
import maskopt.data.cache as cache

spec = json.loads(sys.argv[1])
decode = cache._decode_one

def slow(args):  # slow enough that the runs overlap and the kill lands mid-build
    time.sleep(spec["delay"])
    return decode(args)

cache._decode_one = slow
print("ready", flush=True)
while spec["go"] and not __import__("os").path.exists(spec["go"]):
    time.sleep(0.01)
arr, info = cache.load_cache(spec["paths"], 32, "center", spec["cache"], progress=False)
sha = hashlib.sha256(np.ascontiguousarray(arr)).hexdigest()
print(json.dumps({"built": info.built, "sha": sha}))
"""


def _worker(
    paths: list[Path], cache: Path, delay: float, go: Path | None = None
) -> subprocess.Popen:
    spec = {
        "paths": [str(p) for p in paths],
        "cache": str(cache),
        "delay": delay,
        "go": str(go or ""),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_two_processes_build_once_and_get_identical_arrays(data, tmp_path) -> None:
    paths = read_train(data).paths
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [_worker(paths, cache, 0.02, go) for _ in range(2)]
    go.touch()  # both start building at the same moment
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["sha"] == results[1]["sha"]
    arr, info = load_cache(paths, 32, "center", cache, progress=False)
    assert not info.built
    np.testing.assert_array_equal(arr[5], prepare_image(paths[5], 32))


def test_a_killed_build_leaves_no_cache_and_the_next_run_builds_it(data, tmp_path) -> None:
    paths = read_train(data).paths
    cache = tmp_path / "cache"
    proc = _worker(paths, cache, 0.2)
    deadline = time.time() + 30
    while not list(cache.glob("*.tmp*.npy")) and time.time() < deadline:
        time.sleep(0.02)
    assert list(cache.glob("*.tmp*.npy")), "the worker never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    finals = [p for p in cache.glob("*.npy") if ".tmp" not in p.name]
    assert finals == []  # only the temp file: nothing a reader would take for a cache
    arr, info = load_cache(paths, 32, "center", cache, progress=False)
    assert info.built
    assert list(cache.glob("*.tmp*")) == []  # the dead run's temp file is cleaned up
    np.testing.assert_array_equal(arr[-1], prepare_image(paths[-1], 32))


def test_face_boxes_are_found_once_for_all_sizes(tmp_path, monkeypatch) -> None:
    from maskopt.data import crop as crop_module
    from maskopt.data.synth import synthesize

    synthesize(tmp_path / "d", people=3, eval_people=0, seed=0, size=(384, 512), progress=False)
    ds = read_train(tmp_path / "d", crop="face", progress=False)
    first = ds.images(32)
    assert 0 < ds.crop_fallbacks[32] < len(ds)  # some faces found, some fell back
    assert len(list((tmp_path / "d" / ".maskopt_cache").glob("train_faceboxes_*.npy"))) == 1
    expected = [prepare_image(p, 48, "face") for p in ds.paths]  # (searches faces itself)

    def no_search(rgb):
        raise AssertionError("face search repeated for another size")

    monkeypatch.setattr(crop_module, "face_box", no_search)
    again = read_train(tmp_path / "d", crop="face", progress=False)
    np.testing.assert_array_equal(again.images(48), np.stack(expected))
    assert again.crop_fallbacks[48] == ds.crop_fallbacks[32]
    np.testing.assert_array_equal(again.images(32), first)


def test_a_full_disk_is_a_clear_error_before_decoding(data, monkeypatch) -> None:
    import errno

    def full(fd, offset, length):  # what the kernel answers on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    ds = read_train(data, progress=False)
    with pytest.raises(MaskoptError, match=r"not enough disk space .* GiB .* --cache DIR"):
        ds.images(32)
    assert list((data / ".maskopt_cache").glob("*.npy")) == []
