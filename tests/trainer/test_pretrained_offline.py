"""`pretrained: true` where the weights' server cannot be reached fails at once, in one line."""

from __future__ import annotations

import socket
import time

import pytest

from maskopt.errors import ConfigError
from maskopt.trainer.config import TrainConfig
from maskopt.trainer.models import create_model


def test_pretrained_without_network_or_cache_fails_fast(monkeypatch) -> None:
    def unreachable(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    # No network, whatever this machine has: the probe cannot connect (the weights of this
    # tiny test model are in no local cache: nothing ever downloads them in the tests).
    monkeypatch.setattr(socket, "create_connection", unreachable)
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        create_model(TrainConfig(backbone="test_resnet", pretrained=True, image_size=32))
    assert time.monotonic() - started < 5  # timm alone retries for about 45 s
    message = str(err.value)
    assert "'test_resnet' with pretrained=true" in message and "cannot be reached" in message
    assert "Name or service not known" in message and "\n" not in message
