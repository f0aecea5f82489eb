"""``extra_params`` on every source: refused at load when it names a parameter the source sends
itself (it would replace the window, a page number or a filter), saying which."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from forwarder.sources.codacy import CodacyConfig
from forwarder.sources.codescoring import CodescoringConfig
from forwarder.sources.codestax import CodeStaxConfig
from forwarder.sources.configcat import ConfigCatConfig
from forwarder.sources.http_json_config import HttpJsonConfig

BASE: dict[type[Any], dict[str, Any]] = {
    CodacyConfig: {"type": "codacy", "api_token": "t", "organizations": ["gh/acme"]},
    CodescoringConfig: {"type": "codescoring", "base_url": "http://127.0.0.1:1", "token": "t"},
    CodeStaxConfig: {"type": "codestax", "api_key": "ch_t", "organization": "acme"},
    ConfigCatConfig: {
        "type": "configcat",
        "username": "u",
        "password": "p",
        "organizations": ["08d86d63-2726-47cd-8bfc-59608ecb91e2"],
    },
    HttpJsonConfig: {
        "type": "http_json",
        "vendor": "acme",
        "url": "http://127.0.0.1:1/audit",
        "organizations": ["o"],
        "time_field": "t",
        "mapping": {"action": "a"},
        "params": {"kind": "audit"},
        "from_param": "since",
        "pagination": {"style": "cursor", "cursor_param": "after"},
        "auth": {"type": "query", "param": "key", "token": "t"},
    },
}
CLASHES = [
    (CodacyConfig, {}, "from"),
    (CodacyConfig, {}, "cursor"),
    (CodescoringConfig, {}, "per_page"),
    (CodescoringConfig, {}, "created_at_after"),
    (CodescoringConfig, {"search_param": "text"}, "text"),
    (CodeStaxConfig, {}, "limit"),
    (CodeStaxConfig, {"user_param": "who"}, "who"),
    (ConfigCatConfig, {}, "pageNumber"),
    (ConfigCatConfig, {}, "auditLogType"),
    (HttpJsonConfig, {}, "kind"),
    (HttpJsonConfig, {}, "since"),
    (HttpJsonConfig, {}, "after"),
    (HttpJsonConfig, {}, "key"),
]


@pytest.mark.parametrize(("model", "settings", "name"), CLASHES)
def test_a_parameter_the_source_sends_itself_is_refused_by_name(
    model: type[Any], settings: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValidationError, match=f"extra_params {name}: the .* source sends this parameter itself"):
        model.model_validate({**BASE[model], **settings, "extra_params": {name: "x", "free": "y"}})


@pytest.mark.parametrize("model", list(BASE))
def test_other_extra_params_are_kept(model: type[Any]) -> None:
    assert model.model_validate({**BASE[model], "extra_params": {"scope": "all"}}).extra_params == {"scope": "all"}
