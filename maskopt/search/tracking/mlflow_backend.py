"""MLflow: a run named trial-<n> in the experiment MLFLOW_EXPERIMENT_NAME, else named after the
study, in the store MLFLOW_TRACKING_URI names (a `sqlite:///` file or a server), else in a
SQLite file beside the SQLite storage (maskopt.mlflow.db), else MLflow's default: parameters,
`fold<k>/<metric>` at step = epoch, the value, and the state as a tag (a FAIL ends the run
FAILED). The search makes the experiment before its workers start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from maskopt.search.tracking.base import scalar

if TYPE_CHECKING:
    pass


class MlflowBackend:
    """One MLflow run per trial, in the experiment named after the study (or `experiment`)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, *, experiment: str | None = None) -> None:
        self.tracking_uri = tracking_uri  # None: MLFLOW_TRACKING_URI, else MLflow's default
        # None: MLFLOW_EXPERIMENT_NAME, else the study's name
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        self._client: Any = None
        self.experiments: dict[str, str] = {}  # name -> id
        self.run_id: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:  # made at the first trial: a bad URI is a run-time failure
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _experiment_id(self, name: str) -> str:
        if name not in self.experiments:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    self.experiments[name] = self.client.create_experiment(name)
                except Exception:  # another worker created it just now
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
            if found is not None:
                self.experiments[name] = found.experiment_id
        return self.experiments[name]

    def prepare(self, study: str) -> None:
        """Make the store's tables and the experiment now: workers that make a new SQLite
        store at the same moment race on its schema (`duplicate column name`)."""
        self._experiment_id(self.experiment or study)

    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        from mlflow.entities import Param

        self.close()
        run = self.client.create_run(
            self._experiment_id(self.experiment or study),
            run_name=f"trial-{number}",
            tags={"study": study, "trial": str(number)},
        )
        self.run_id = run.info.run_id
        values = {**config, **params}
        self.client.log_batch(
            self.run_id, params=[Param(k, str(scalar(v))) for k, v in values.items()]
        )

    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        assert self.run_id is not None, "log_epoch before start"
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(f"fold{fold}/{k}", float(v), now, epoch) for k, v in metrics.items()],
        )

    def end(self, value: float | None, state: str) -> None:
        run_id, self.run_id = self.run_id, None
        assert run_id is not None, "end before start"
        if value is not None:
            self.client.log_metric(run_id, "value", float(value))
        self.client.set_tag(run_id, "state", state)
        self.client.set_terminated(run_id, "FAILED" if state == "FAIL" else "FINISHED")

    def close(self) -> None:
        if self.run_id is not None:
            run_id, self.run_id = self.run_id, None
            self.client.set_terminated(run_id, "KILLED")
