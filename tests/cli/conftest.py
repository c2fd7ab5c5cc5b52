"""The CLI's tests train tiny models as the trainer's do: one thread, no loader processes."""

from tests.trainer.conftest import _one_thread  # noqa: F401  (an autouse fixture)
