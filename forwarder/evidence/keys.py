"""The Ed25519 key pair that signs digests: generated, loaded, fingerprinted.

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), the form ``openssl pkey``
reads, so an auditor can check a signature without this program. The fingerprint is the
SHA-256 of the raw 32-byte public key, in hex: every digest names the key that signed it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in each function: a daemon without evidence never loads cryptography
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 key (message names the file)."""


def generate(private_path: Path, public_path: Path) -> str:
    """Writes a new pair (the private file created 0600, never over an existing file); its fingerprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for path in (private_path, public_path):  # refused before anything is written: never half a pair
        if path.exists() or path.is_symlink():
            raise SigningKeyError(f"{path} exists already; move it aside to make a new key pair")
        if not path.parent.is_dir():
            raise SigningKeyError(f"cannot write {path}: its directory {path.parent} does not exist")
    written: list[Path] = []
    try:
        for path, data, mode in ((private_path, private, 0o600), (public_path, public, 0o644)):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                raise SigningKeyError(f"{path} exists already; move it aside to make a new key pair") from None
            except OSError as exc:
                raise SigningKeyError(f"cannot write {path}: {exc.strerror}") from None
            written.append(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                os.fsync(handle.fileno())
    except BaseException:
        for path in written:  # a private key without its public half is of no use: leave nothing
            path.unlink(missing_ok=True)
        raise
    return fingerprint(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from None
    except ValueError:
        raise SigningKeyError(
            f"{path} is not a PEM private key (make one with `audit-forwarder keys generate`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    return key


def load_public(data: bytes, where: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SigningKeyError(f"{where} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{where} is not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def valid(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
