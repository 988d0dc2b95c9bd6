"""The one duration syntax shared by the API, the CLI and rule documents."""

import pytest

from wulian.domain.duration import duration_ms


@pytest.mark.parametrize(("text", "ms"), [
    ("250ms", 250), ("30s", 30_000), ("5m", 300_000), ("1.5h", 5_400_000), ("1d", 86_400_000),
    ("2w", 1_209_600_000), ("2.3h", 8_280_000), ("1.005s", 1005), (" 10M ", 600_000), ("0s", 0),
])
def test_durations(text: str, ms: int) -> None:
    assert duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5", "m", "-5m", "5 m", "5y", "1e3s", "5mm", "1." * 3])
def test_not_durations(text: str) -> None:
    assert duration_ms(text) is None
