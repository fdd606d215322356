"""Where each method may run (method.deployment): declared with its registry line, its own default
when the scenario says null, and a clear refusal for a deployment the method does not have."""

from __future__ import annotations

import pytest

from cemasim.errors import ConfigError
from cemasim.methods import ADAPTERS, METHODS, build_method
from cemasim.methods.registry import IN_CLOUD, OFFLOAD_OR_EDGE, ON_EDGE, default_deployment, deployments
from tests.conftest import small


def test_every_method_declares_where_it_runs():
    for name in METHODS.names():
        assert deployments(name) in (ON_EDGE, OFFLOAD_OR_EDGE, IN_CLOUD), name
    # the methods that back-propagate are exactly those that may run on the edge or be offloaded
    assert {n for n in METHODS.names() if deployments(n) == OFFLOAD_OR_EDGE} == set(ADAPTERS)
    assert deployments("no-such-method") == () and default_deployment("no-such-method") is None


@pytest.mark.parametrize("name, default, uses_cloud", [
    ("bn_adapt", "edge", False), ("t3a", "edge", False), ("tent", "cloud", True), ("roid", "cloud", True),
    ("cema", "cloud", True), ("cloud_inference", "cloud", True)])
def test_null_means_the_methods_own_default(name, default, uses_cloud):
    sc = small(f"method.name={name}")
    assert sc.method.deployment == default  # resolved when the scenario is validated, as written to the run
    method = build_method(sc, 10)
    assert method.uses_cloud == uses_cloud
    assert not method.adapts_on_edge


def test_an_explicit_supported_deployment_is_kept():
    sc = small("method.name=tent", "method.deployment=edge", "fleet.profile=jetson-nano")
    assert sc.method.deployment == "edge" and build_method(sc, 10).adapts_on_edge
    assert small("method.name=tent", "method.deployment=cloud").method.deployment == "cloud"
    assert small("method.name=lame", "method.deployment=edge").method.deployment == "edge"


@pytest.mark.parametrize("name, deployment, allowed", [
    ("bn_adapt", "cloud", "edge"), ("t3a", "cloud", "edge"), ("source", "cloud", "edge"),
    ("cema", "edge", "cloud"), ("upload_all", "edge", "cloud"), ("cloud_inference", "edge", "cloud")])
def test_a_deployment_the_method_does_not_have_is_refused(name, deployment, allowed):
    with pytest.raises(ConfigError) as err:
        small(f"method.name={name}", f"method.deployment={deployment}")
    message = "\n".join(err.value.problems)
    assert f"method.deployment: {name}" in message and f"'{deployment}'" in message
    assert f"allowed: {allowed}" in message


def test_unknown_methods_are_reported_once_by_name():
    with pytest.raises(ConfigError) as err:
        small("method.name=tnet", "method.deployment=edge")
    assert [p for p in err.value.problems if "method." in p] == [p for p in err.value.problems
                                                               if p.startswith("method.name")]
