"""Local emulators of the vendors' audit-log APIs, for tests, the demo and the benchmark."""

from __future__ import annotations

from forwarder.emulators.base import Emulator
from forwarder.emulators.codacy import CodacyEmulator
from forwarder.emulators.codescoring import CodescoringEmulator
from forwarder.emulators.codestax import CodeStaxEmulator
from forwarder.emulators.configcat import ConfigCatEmulator
from forwarder.emulators.sentinel import SentinelEmulator
from forwarder.emulators.splunk_hec import SplunkHecEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "codacy": CodacyEmulator,
    "configcat": ConfigCatEmulator,
    "codescoring": CodescoringEmulator,
    "codestax": CodeStaxEmulator,
    "splunk_hec": SplunkHecEmulator,
    "sentinel": SentinelEmulator,
}
