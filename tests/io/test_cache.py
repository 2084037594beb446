"""fitlib's cache folder: FITLIB_CACHE_DIR, created on demand, clear error when it cannot be used."""
import pytest

from fitlib.io.cache import cache_dir


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FITLIB_CACHE_DIR", str(tmp_path / "a" / "b"))
    assert cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


def test_cache_dir_that_is_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FITLIB_CACHE_DIR", str(blocker))
    with pytest.raises(ValueError, match="FITLIB_CACHE_DIR"):
        cache_dir()
