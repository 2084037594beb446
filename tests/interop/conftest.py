"""A real fit of messi5.jpg with the open model, shared by the export tests."""
import pytest

import fitlib


@pytest.fixture(scope="session")
def messi(open_model, data_dir):
    """(image path, FitResult): the bundled detector's keypoints, fitted with the default config."""
    path = data_dir / "messi5.jpg"
    result = fitlib.fit(path)
    assert result.fitted.any()
    return path, result
