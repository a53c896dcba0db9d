"""The registry's local file handling fails in one line (RegistryError), not with a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from registry.errors import RegistryError
from registry.resolve import _cached_download, read_mlmodel


def test_a_missing_mlmodel_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"MLmodel: cannot read the MLmodel file"):
        read_mlmodel(tmp_path)


def test_an_mlmodel_file_that_is_not_yaml_is_a_registry_error(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("metadata: [unclosed\n")
    with pytest.raises(RegistryError, match=r"MLmodel: not valid YAML"):
        read_mlmodel(tmp_path)


def test_a_cache_folder_that_cannot_be_created_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # The folder is refused before the client is asked anything.
    client = cast(Any, None)
    with pytest.raises(RegistryError, match=r"cannot create the model cache .*REGISTRY_CACHE_DIR"):
        _cached_download(client, "credit-scoring", "1", blocker / "models")
