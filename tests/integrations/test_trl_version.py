"""The TRL versions `isdaa.integrations.trl` accepts (checked without importing TRL)."""

from __future__ import annotations

import pytest

from isdaa.integrations import SUPPORTED_TRL, TESTED_TRL, check_trl_version


@pytest.mark.parametrize("version", [TESTED_TRL, "1.16.3", "1.16.1.dev0", "1.16.0+local"])
def test_supported_versions_pass(version):
    check_trl_version(version)


@pytest.mark.parametrize("version", ["0.19.1", "1.15.2", "1.17.0", "2.0.0", "1", "main"])
def test_other_versions_fail_with_one_line(version):
    with pytest.raises(ImportError) as info:
        check_trl_version(version)
    message = str(info.value)
    assert "\n" not in message
    assert f"installed: trl {version}" in message and "supports TRL 1.16.x" in message
    assert "pip install 'isdaa[trl]'" in message
    assert SUPPORTED_TRL == (1, 16)
