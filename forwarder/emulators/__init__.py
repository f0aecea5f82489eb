"""Local emulators of the vendors' audit-log APIs, for tests, the demo and the benchmark."""

from __future__ import annotations

from forwarder.emulators.base import Emulator
from forwarder.emulators.codacy import CodacyEmulator
from forwarder.emulators.codescoring import CodescoringEmulator
from forwarder.emulators.codestax import CodeStaxEmulator
from forwarder.emulators.configcat import ConfigCatEmulator
from forwarder.emulators.github import GitHubEmulator
from forwarder.emulators.google_workspace import GoogleWorkspaceEmulator
from forwarder.emulators.okta import OktaEmulator
from forwarder.emulators.sentinel import SentinelEmulator
from forwarder.emulators.splunk_hec import SplunkHecEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "codacy": CodacyEmulator,
    "configcat": ConfigCatEmulator,
    "codescoring": CodescoringEmulator,
    "codestax": CodeStaxEmulator,
    "splunk_hec": SplunkHecEmulator,
    "okta": OktaEmulator,
    "github": GitHubEmulator,
    "google_workspace": GoogleWorkspaceEmulator,
    "sentinel": SentinelEmulator,
}
