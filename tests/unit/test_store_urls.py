"""Store URLs in messages: passwords and tokens masked."""

from __future__ import annotations

import pytest

from accord.store import display_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "nats://accord:s3cret@127.0.0.1:4222?bucket=b",
            "nats://accord:***@127.0.0.1:4222?bucket=b",
        ),
        ("nats://tok3n@host", "nats://***@host"),
        ("nats://host:4222", "nats://host:4222"),
        ("sqlite:////var/lib/accord/accord.db", "sqlite:////var/lib/accord/accord.db"),
        ("memory://", "memory://"),
    ],
)
def test_display_url_masks_secrets(url: str, shown: str) -> None:
    assert display_url(url) == shown
