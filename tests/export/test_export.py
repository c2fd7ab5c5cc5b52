"""`export_best` and the bundle it writes, on real studies in the search's format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from maskopt.bundle.manifest import read_manifest
from maskopt.bundle.predict import predict
from maskopt.data.layout import read_eval, read_train
from maskopt.ensemble.vote import combine
from maskopt.errors import StudyError
from maskopt.export.export import export_best, retrain_config
from maskopt.export.options import ExportOptions
from maskopt.export.retrain import member_seed
from maskopt.store.records import trial_config
from maskopt.store.storage import load_study
from maskopt.trainer.config import TrainConfig
from maskopt.trainer.metrics import macro_f1


def oof_of(study, number: int) -> np.ndarray:
    from optuna.artifacts import download_artifact

    from maskopt.store.locations import create_artifact_store

    s = load_study(study.url, study.name)
    t = s.trials[number]
    path = Path(study.artifacts).parent / f"check-{number}-{id(s)}.npz"
    download_artifact(
        artifact_store=create_artifact_store(study.artifacts),
        file_path=str(path),
        artifact_id=t.user_attrs["oof_artifact"],
    )
    with np.load(path) as z:
        return z["probs"]


def test_retrain_config_uses_the_median_best_epoch() -> None:
    cfg = TrainConfig(backbone="test_resnet", epochs=10, warmup_epochs=3, freeze_epochs=4)
    assert retrain_config(cfg, [2, 3, 7]).epochs == 3
    short = retrain_config(cfg, [1, 2])  # median 1.5 -> 2; warm-up and freezing fit inside
    assert (short.epochs, short.warmup_epochs, short.freeze_epochs) == (2, 1, 2)
    assert retrain_config(cfg, []) == cfg


def test_export_retrained_bundle_reproduces_its_eval_probs(finished_study, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    rep = export_best(
        ExportOptions(storage=finished_study.url, study=finished_study.name, out=out, device="cpu"),
        progress=False,
    )
    m = read_manifest(out)
    assert m == rep.manifest and m.data == str(finished_study.data.resolve())
    # the export is the option expected to score best on new people (a simpler one within
    # the margin): not the highest in-sample OOF F1, which the best single's choice inflates
    options = m.choice["options"]
    top = max(o["expected"]["value"] for o in options)
    chosen = options[m.choice["chosen"]]
    assert chosen["expected"]["value"] >= top - m.choice["margin"]
    assert [mm.trial for mm in m.members] == [m.candidates[i]["trial"] for i in chosen["members"]]
    assert sum(m.weights) == pytest.approx(1.0)
    for member in m.members:
        assert member.retrained and len(member.checkpoints) == 1
        trial = load_study(finished_study.url, finished_study.name).trials[member.trial]
        searched = trial_config(load_study(finished_study.url, finished_study.name), member.trial)
        assert member.epochs == retrain_config(searched, trial.user_attrs["fold_best_epoch"]).epochs
        # a seed of its own, not the fold seed every trial trained with
        assert member.config["seed"] == member_seed(searched, member.trial) != searched.seed
    # every fold's best epoch was the last (2 of 2): the export says the epochs were too few
    capped = [c for c in m.candidates if c["trial"] in {mm.trial for mm in m.members}]
    for c in capped:
        if all(e == c["epochs"] for e in c["fold_best_epoch"]):
            assert any(f"trial {c['trial']}:" in n and "epochs were too few" in n for n in m.notes)
    # the recorded ensemble OOF score is the score of the stored OOF probabilities, weighted
    labels = read_train(finished_study.data, progress=False).labels()
    mix = combine([oof_of(finished_study, mm.trial) for mm in m.members], m.weights, vote=m.vote)
    assert macro_f1(labels, mix.argmax(1)) == pytest.approx(m.oof_f1)
    # done-when: predict on the bundle reproduces the ensemble's probabilities for the same images
    ev = read_eval(finished_study.data, progress=False)
    with np.load(out / "eval_probs.npz") as z:
        saved, ids = z["probs"], z["image_ids"]
        assert z["members"].tolist() == [mm.trial for mm in m.members]
        assert np.allclose(combine(list(z["member_probs"]), m.weights), saved, atol=1e-6)
    assert list(ids) == ev.image_ids
    again = predict(out, ev.paths, device="cpu").probs
    assert np.allclose(again, saved, atol=1e-6)
    # submission, held-out score, reports, plots
    with open(out / "submission.csv") as f:
        sub = list(csv.DictReader(f))
    assert [r["ImageID"] for r in sub] == ev.image_ids
    assert [int(r["ans"]) for r in sub] == saved.argmax(1).tolist()
    h = m.heldout
    assert h is not None and h["value"] == pytest.approx(macro_f1(ev.solution, saved.argmax(1)))
    assert h["low"] <= h["value"] <= h["high"] and h["unit"] == "people"
    assert set(m.heldout_members) == {str(mm.trial) for mm in m.members}
    assert json.loads((out / "oof_metrics.json").read_text())["macro_f1"] == pytest.approx(m.oof_f1)
    assert len((out / "oof_confusion.csv").read_text().splitlines()) == 19
    assert (
        out / "plots.html"
    ).stat().st_size > 100_000 and "Parameter importances" in rep.plots.made
    # trade-off rows: F1 and speed measured for the best single model with and without TTA
    assert m.tradeoff[0]["oof_f1"] == pytest.approx(max(c["oof_f1"] for c in m.candidates))
    assert all(r["images_per_s"] and r["images_per_s"] > 0 for r in m.tradeoff)
    assert m.tradeoff[1]["oof_f1"] is not None  # TTA measured with the kept fold models
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary folders left


def test_export_keeps_a_beating_ensemble_of_fold_models(
    complementary_study, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    export_best(
        ExportOptions(
            storage=complementary_study.url,
            study=complementary_study.name,
            data=complementary_study.data,
            out=out,
            retrain=False,
            tta=True,
            device="cpu",
        ),
        progress=False,
    )
    m = read_manifest(out)
    assert m.choice["kept"] and "expected macro F1 on new people" in m.choice["decision"]
    # the two complementary trials vote, trial 0 the most (only a 2:1 mix of them gets every
    # image right); the members' temperatures travel with them into prediction
    trials = [mm.trial for mm in m.members]
    assert {0, 1} <= set(trials) and sum(m.weights) == pytest.approx(1.0)
    weight = dict(zip(trials, m.weights, strict=True))
    assert weight[0] > weight[1]
    assert [mm.temperature for mm in m.members] == m.choice["temperatures"]
    assert m.choice["gain"]["diff"]["value"] > 0 and m.choice["gain"]["diff"]["low"] > 0
    chosen = m.choice["options"][m.choice["chosen"]]
    assert chosen["expected"]["value"] > m.choice["options"][0]["expected"]["value"]
    best_single = max(c["oof_f1"] for c in m.candidates)
    assert m.oof_f1 == pytest.approx(1.0) and m.oof_f1 > best_single
    assert m.tta and all(not mm.retrained and len(mm.checkpoints) == 2 for mm in m.members)
    n = len(m.members)
    assert [r["name"] for r in m.tradeoff][2:] == [f"ensemble ({n} trials)", "ensemble + TTA"]
    assert m.tradeoff[2]["models"] == 2 * n and m.tradeoff[3]["models"] == 4 * n
    ev = read_eval(complementary_study.data, progress=False)
    with np.load(out / "eval_probs.npz") as z:
        assert np.allclose(predict(out, ev.paths, device="cpu").probs, z["probs"], atol=1e-6)


def test_export_refuses_other_data(finished_study, tmp_path: Path) -> None:
    from maskopt.data.synth import synthesize

    other = tmp_path / "other"
    synthesize(other, people=12, eval_people=0, seed=5, size=(96, 128), progress=False)
    with pytest.raises(
        StudyError, match=r"not the data study 'maskopt' was searched on \(fingerprint"
    ):
        export_best(
            ExportOptions(
                storage=finished_study.url,
                study=finished_study.name,
                data=other,
                out=tmp_path / "bundle",
                device="cpu",
            ),
            progress=False,
        )
    assert not (tmp_path / "bundle").exists()


def test_interrupted_export_leaves_no_bundle(finished_study, tmp_path: Path, monkeypatch) -> None:
    import maskopt.export.export as export_module

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "write_plots", boom)
    with pytest.raises(KeyboardInterrupt):
        export_best(
            ExportOptions(
                storage=finished_study.url,
                study=finished_study.name,
                data=finished_study.data,
                out=tmp_path / "bundle",
                retrain=False,
                device="cpu",
            ),
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_predict_eval_and_files_on_a_bundle(complementary_study, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    rep = export_best(
        ExportOptions(
            storage=complementary_study.url,
            study=complementary_study.name,
            data=complementary_study.data,
            out=out,
            retrain=False,
            device="cpu",
        ),
        progress=False,
    )
    pred = predict(out, eval_data=complementary_study.data, device="cpu")
    with np.load(out / "eval_probs.npz") as z:
        assert np.allclose(pred.probs, z["probs"], atol=1e-6)
        assert pred.images == list(z["image_ids"])
    assert pred.heldout_f1 == pytest.approx(rep.manifest.heldout["value"])
    folder = complementary_study.data / "eval" / "images"
    files = predict(out, [folder], device="cpu")
    assert len(files.images) == len(pred.images) and files.heldout_f1 is None
    by_name = dict(zip([Path(p).name for p in files.images], files.probs, strict=True))
    assert np.allclose(np.stack([by_name[i] for i in pred.images]), pred.probs, atol=1e-6)


def test_export_without_a_recorded_data_folder_asks_for_data(
    finished_study, tmp_path: Path
) -> None:
    import optuna

    from maskopt.errors import ConfigError

    study = load_study(finished_study.url, finished_study.name)
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(
        from_study_name=study.study_name, from_storage=finished_study.url, to_storage=url
    )
    load_study(url, study.study_name).set_user_attr("data_dir", None)  # as 0.1 left it
    with pytest.raises(ConfigError, match="does not record its data folder .*: pass --data"):
        export_best(
            ExportOptions(storage=url, study=study.study_name, out=tmp_path / "b"), progress=False
        )
    assert not (tmp_path / "b").exists()


def test_the_export_reads_the_data_the_search_recorded(tmp_path: Path) -> None:
    from maskopt.errors import ConfigError, DataError
    from maskopt.export.export import study_data
    from maskopt.store.records import StudySettings

    def settings(**attrs):
        return StudySettings(data_fingerprint="f", n_folds=2, space="s", epochs=1, **attrs)

    (tmp_path / "d").mkdir()
    recorded = settings(data_dir=str(tmp_path / "d"), skip_bad=True)
    assert study_data("s", recorded, None, None) == (tmp_path / "d", True)
    assert study_data("s", recorded, tmp_path / "other", False) == (tmp_path / "other", False)
    with pytest.raises(DataError, match=r"searched on, .*gone.* is not here: pass --data"):
        study_data("s", settings(data_dir=str(tmp_path / "gone")), None, None)
    with pytest.raises(ConfigError, match="does not record its data folder"):
        study_data("s", settings(), None, None)
