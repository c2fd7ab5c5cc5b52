"""The k-fold objective feeds all of a trial's folds from one loader pool, and records where
its augmentation ran."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

import maskopt.search.objective as objective
import maskopt.trainer.loop as loop
from maskopt.store import records as r
from maskopt.store.storage import load_study

SPACE = """
name: pool
epochs: 1
params:
  backbone: test_resnet
  image_size: 32
  batch_size: 16
  lr: {low: 1.0e-3, high: 1.0e-2, log: true}
  augment: 1
  augment_on: auto
"""


@pytest.mark.parametrize("pruner", ["median", "wilcoxon"])
def test_a_trial_makes_one_pool_of_all_its_loader_processes(
    tiny_data, tmp_path, monkeypatch, pruner
):
    from maskopt.search.options import SearchOptions
    from maskopt.search.runner import run_search

    pools: list = []
    runs: list = []

    class Pool(loop.LoaderPool):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            pools.append(self)

    class Run(loop.FoldRun):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            runs.append((self._own_pool, self.loader.pool))

    monkeypatch.setattr(objective, "LoaderPool", Pool)  # the names the objective uses
    monkeypatch.setattr(objective, "FoldRun", Run)
    monkeypatch.setenv("MASKOPT_WORKERS", "2")  # default_workers: the trial's processes
    space = tmp_path / "pool.yaml"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    opts = SearchOptions(
        data=tiny_data,
        space=str(space),
        trials=1,
        folds=3,
        storage=url,
        pruner=pruner,
        seed=0,
        device="cpu",
        keep_models=0,
    )
    assert run_search(opts, show_progress=False).finished == 1
    # one pool of 2 processes (not 3 pools of 2 // 3 = 0..1), shared by the 3 folds, closed
    assert len(pools) == 1 and pools[0].workers == 2 and pools[0].loader is None
    assert runs == [(None, pools[0])] * 3
    trial = load_study(url, "maskopt").get_trials()[0]
    assert trial.state == TrialState.COMPLETE
    # the config keeps what was sampled; the placement says what ran (the CPU: cpu, unmeasured)
    rec = r.read_trial(trial)
    assert rec.config["augment_on"] == "auto"
    assert rec.augment_placement == {
        "chosen": "cpu",
        "cpu_images_per_s": None,
        "device_images_per_s": None,
    }
