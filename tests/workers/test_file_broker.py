"""The embedded file broker: a message file appears only once it is whole."""

from __future__ import annotations

import os
import uuid

import pytest
from kombu import Connection
from kombu.exceptions import ChannelError

from workers import file_broker
from workers.celery_app import filesystem_transport_options


@pytest.fixture
def connection(tmp_path):
    """A kombu connection to a file broker in a fresh folder."""
    with Connection("filesystem://", transport_options=filesystem_transport_options(tmp_path / "broker")) as conn:
        yield conn


def _queue(connection):
    # A name of its own: kombu keeps declared exchanges per process, so a name used with another folder
    # would be taken as declared there and this folder would never get its binding.
    return connection.SimpleQueue(f"steward-test-{uuid.uuid4().hex}")


def _messages(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".msg"))


def test_filesystem_urls_use_the_whole_message_transport(connection):
    assert isinstance(connection.default_channel, file_broker.Channel)


def test_a_message_is_invisible_to_consumers_until_it_is_complete(connection, tmp_path, monkeypatch):
    folder, seen = tmp_path / "broker", []
    real_replace = os.replace

    def replace(source, target):
        # The moment before the rename: the content is written, yet no consumer can see a message.
        seen.append((_messages(folder), os.path.getsize(source)))
        real_replace(source, target)

    monkeypatch.setattr(file_broker.os, "replace", replace)
    queue = _queue(connection)
    queue.put({"hello": "world"})

    assert seen[0][0] == [] and seen[0][1] > 0
    assert len(_messages(folder)) == 1
    message = queue.get(timeout=5)
    assert message.payload == {"hello": "world"}
    message.ack()
    queue.close()


def test_a_failed_write_publishes_nothing(connection, tmp_path, monkeypatch):
    def refuse(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(file_broker.os, "replace", refuse)
    queue = _queue(connection)
    with pytest.raises(ChannelError):
        queue.put({"hello": "world"})
    assert _messages(tmp_path / "broker") == []
    queue.close()
