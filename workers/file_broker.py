"""The embedded broker (`filesystem://`): kombu's filesystem transport, with messages that appear whole.

Kombu's producer creates the message file under its final name and then writes it, and its consumer
takes any file with that name without waiting for the writer's lock. On a busy machine a worker could
take a message that was still empty, fail to decode it and stop (seen in the demo under load). Here a
message is written under a name no consumer looks at and renamed into place once complete: a rename
within one folder is atomic, so a consumer sees the whole message or nothing.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

PARTIAL = ".partial"  # consumers match "<queue>.msg" exactly, so "<queue>.msg.partial" is never taken


class Channel(filesystem.Channel):
    """A filesystem channel whose messages are renamed into place once written."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Put `payload` onto `queue`, visible to consumers only once complete."""
        # Kombu's own naming: consumers take files in name order, which is publishing order.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        try:
            with open(final + PARTIAL, "wb") as partial:
                partial.write(str_to_bytes(dumps(payload)))
            os.replace(final + PARTIAL, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """Kombu's filesystem transport with `Channel` above."""

    Channel = Channel


def use_whole_message_files() -> None:
    """Make `filesystem://` broker URLs use this transport (kombu resolves transports by alias)."""
    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
