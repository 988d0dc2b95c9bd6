"""Secrets kept in the data dir: created once, private, the same for every process."""

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wulian.config import Settings


def test_a_secret_is_created_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    value, created = settings.ensure_secret("admin.token")
    assert created and len(value) >= 32
    assert settings.ensure_secret("admin.token") == (value, False)
    mode = stat.S_IMODE((tmp_path / "data" / "admin.token").stat().st_mode)
    assert mode == 0o600


def test_concurrent_first_uses_agree_on_one_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: settings.ensure_secret("race.secret"), range(32)))
    assert len({value for value, _ in results}) == 1
    assert sum(created for _, created in results) == 1
