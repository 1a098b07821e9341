"""deploy/kubernetes: valid against the Kubernetes schemas (offline), and the Deployment's
grace period holds graceful's stop budget (`graceful check --within`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

FOLDER = ROOT / "deploy" / "kubernetes"
CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")
KUBERNETES = "1.30.0"  # the oldest minor still maintained when this was written
BUDGET = {"GRACEFUL_PRE_STOP_DELAY", "GRACEFUL_DRAIN_TIMEOUT", "GRACEFUL_CANCEL_GRACE",
          "GRACEFUL_HOOK_TIMEOUT", "GRACEFUL_CHECKPOINT_TIMEOUT"}


def _resources() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(FOLDER.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _deployment() -> dict[str, Any]:
    return next(doc for doc in _resources() if doc["kind"] == "Deployment")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_manifests_are_valid_offline(offline):
    """1. Deployment, Service, PodDisruptionBudget, each valid (strict: no unknown field)
    against the bundled schemas of Kubernetes 1.30 and the newest the package knows."""
    kinds = sorted(doc["kind"] for doc in _resources())
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service"]
    for version in (KUBERNETES, kubernetes_validate.utils.latest_version() + ".0"):
        for doc in _resources():
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_broken_manifest_is_caught(offline):
    """2. The validation bites: a misspelt field and a wrong type are refused."""
    misspelt = _deployment()
    misspelt["spec"]["template"]["spec"]["terminationGracePeriod"] = 40
    wrong_type = _deployment()
    wrong_type["spec"]["replicas"] = "three"
    for doc in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_grace_period_holds_the_stop_budget():
    """3. `graceful check TARGET --within terminationGracePeriodSeconds`, with the
    container's args and environment, exits 0; with 6 s less (under the 35 s worst case)
    it exits 1. Every budget option is set in the manifest, so the image's defaults do
    not change the sum."""
    pod = _deployment()["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    container = pod["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert set(env) >= BUDGET
    clean = {k: v for k, v in os.environ.items()
             if k != "PYTHONPATH" and not k.startswith("GRACEFUL_")}

    def check(within: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CONSOLE_SCRIPT), "check", *container["args"], "--within",
                               str(within)], env={**clean, **env}, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    fits = check(grace)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    assert "35.0" in fits.stdout
    assert check(grace - 6).returncode == 1


def test_probes_and_rollout_match_graceful():
    """4. The probes ask graceful's health paths on the container's port; a rollout keeps
    every replica (maxUnavailable 0); the PodDisruptionBudget and the Service select the
    Deployment's pods."""
    docs = {doc["kind"]: doc for doc in _resources()}
    deployment = docs["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    liveness = container["livenessProbe"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > grace
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert docs["Service"]["spec"]["selector"] == labels
    assert container["ports"][0]["containerPort"] == int(
        next(e["value"] for e in container["env"] if e["name"] == "GRACEFUL_PORT"))
