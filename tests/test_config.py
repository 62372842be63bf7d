"""node.toml: strict keys, and the shipped file documents every key the node knows."""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path

import pytest

from node.config import Config, config_from_dict, load_config
from node.errors import ConfigError
from tests.index_db import node_default_url
from tests.peers import REPO


def test_shipped_node_toml_loads_with_the_fixed_defaults() -> None:
    config = load_config(REPO / "node.toml")
    assert config.node.ae_title == "VIEWNODE"
    assert (config.dicom.port, config.http.port) == (11112, 8181)
    assert config.api.servlet_authorization_header == ""
    assert node_default_url(config).startswith("sqlite+aiosqlite:///")


def test_shipped_node_toml_names_and_comments_every_key() -> None:
    text = (REPO / "node.toml").read_text()
    hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        kind = hints[section.name]
        if not (dataclasses.is_dataclass(kind) and isinstance(kind, type)):
            continue
        body = re.search(rf"(?ms)^\[{section.name}\][^\n]*\n(.*?)(?=^\[|\Z)", text)
        assert body is not None, f"node.toml has no [{section.name}] section"
        for key in dataclasses.fields(kind):
            line = re.search(rf"(?m)^{key.name}\s*=.*$", body.group(1))
            assert line is not None, f"node.toml lacks {section.name}.{key.name}"
            assert "#" in line.group(0), f"{section.name}.{key.name} has no comment"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"node": {"ae_titel": "X"}}, "node.ae_titel"),
        ({"dicm": {}}, "dicm"),
        ({"dicom": {"port": "11112"}}, "dicom.port"),
        ({"source_nodes": [{"ae_title": "P", "host": "h"}]}, "port"),
        ({"source_nodes": [{"ae_title": "P", "host": "h", "port": 1, "retrieve": "C-PULL"}]},
         "retrieve"),
        ({"node": {"ae_title": "A_TITLE_THAT_IS_TOO_LONG"}}, "node.ae_title"),
        ({"http": {"trusted_proxies": ["nginx.local"]}}, "http.trusted_proxies"),
        ({"http": {"trusted_proxies": "127.0.0.1"}}, "http.trusted_proxies"),
        ({"http": {"instance_name": " padded "}}, "http.instance_name"),
        ({"storage": {"backend": "nfs"}}, "storage.backend"),
        ({"storage": {"backend": "s3"}}, "storage.bucket"),
        ({"storage": {"backend": "s3", "bucket": "b", "credentials_file": "/etc/keys"}},
         "storage.credentials_file"),
        ({"storage": {"cache_max_bytes": -1}}, "storage.cache_max_bytes"),
        ({"storage": {"max_bytes": -1}}, "storage.max_bytes"),
        ({"storage": {"full_policy": "evict"}}, "storage.full_policy"),
        ({"http": {"metrics_public": "yes"}}, "http.metrics_public"),
        ({"node": {"workers": -1}}, "node.workers"),
        ({"node": {"workers": 65}}, "node.workers"),
        ({"node": {"workers": "auto"}}, "node.workers"),
    ],
)
def test_a_bad_key_is_an_error_naming_it(raw: dict[str, typing.Any], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        config_from_dict(raw)


def test_workers_zero_means_one_per_usable_cpu_core() -> None:
    assert config_from_dict({}).worker_count == len(os.sched_getaffinity(0))
    assert config_from_dict({"node": {"workers": 3}}).worker_count == 3


def test_serve_refuses_to_start_on_an_unknown_key(tmp_path: Path) -> None:
    from tests.peers import NodeProcess

    node = NodeProcess(tmp_path, extra={"http": {"prot": 1}})
    node.write_config()
    result = node.cli("check")
    assert result.returncode == 2
    assert "http.prot" in result.stderr


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"dicom": {"maximum_pdu_size": 4095}}, "dicom.maximum_pdu_size"),
        ({"dicom": {"maximum_pdu_size": 2**32}}, "dicom.maximum_pdu_size"),
        ({"dicom": {"maximum_pdu_size": -1}}, "dicom.maximum_pdu_size"),
        ({"dicom": {"acse_timeout": 0}}, "dicom.acse_timeout"),
        ({"dicom": {"dimse_timeout": -1.5}}, "dicom.dimse_timeout"),
        ({"dicom": {"network_timeout": 0.0}}, "dicom.network_timeout"),
        ({"dicom": {"query_timeout": 0}}, "dicom.query_timeout"),
        ({"dicom": {"retrieve_timeout": -600.0}}, "dicom.retrieve_timeout"),
        ({"dicom": {"acse_timeout": "30"}}, "dicom.acse_timeout"),
        ({"dicom": {"acse_timeout": True}}, "dicom.acse_timeout"),
        ({"sources": {"fetch_timeout": 0}}, "sources.fetch_timeout"),
        ({"jobs": {"poll_seconds": 0}}, "jobs.poll_seconds"),
        ({"dicom": {"port": 65536}}, "dicom.port"),
        ({"http": {"port": -1}}, "http.port"),
        ({"source_nodes": [{"ae_title": "P", "host": "h", "port": 70000}]},
         "source_nodes[0].port"),
        ({"move_destinations": [{"ae_title": "M", "host": "h", "port": 0}]},
         "move_destinations[0].port"),
        ({"dicom": {"max_associations": 0}}, "dicom.max_associations"),
        ({"dicom": {"query_from": [1]}}, "dicom.query_from[0]"),
        ({"api": {"token_lifetime_seconds": 0}}, "api.token_lifetime_seconds"),
        ({"http": {"max_body_bytes": 0}}, "http.max_body_bytes"),
        ({"jobs": {"heartbeat_seconds": 30.0}}, "jobs.heartbeat_seconds"),
    ],
)
def test_a_value_out_of_its_range_is_an_error_naming_the_key(
    raw: dict[str, typing.Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        config_from_dict(raw)


@pytest.mark.parametrize("size", [0, 4096, 262144, 2**32 - 1])
def test_every_pdu_size_dicom_allows_is_taken(size: int) -> None:
    """0 announces no limit; otherwise DICOM's Maximum Length, from 4 KiB to 2^32 - 1."""
    assert config_from_dict({"dicom": {"maximum_pdu_size": size}}).dicom.maximum_pdu_size == size


def test_a_float_key_takes_an_integer() -> None:
    config = config_from_dict({"dicom": {"acse_timeout": 5}})
    assert config.dicom.acse_timeout == 5.0 and isinstance(config.dicom.acse_timeout, float)


def test_serve_refuses_to_start_on_a_pdu_size_or_timeout_out_of_range(tmp_path: Path) -> None:
    from tests.peers import NodeProcess

    for section, key, value in [("dicom", "maximum_pdu_size", 1024),
                                ("dicom", "network_timeout", 0)]:
        node = NodeProcess(tmp_path / key, extra={section: {key: value}})
        node.write_config()
        stopped = node.cli("check")
        assert (stopped.returncode, f"{section}.{key}" in stopped.stderr) == (2, True)
