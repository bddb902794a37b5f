"""Secrets in URIs: shown redacted, never frozen into a spec.

A store URI (`s3://KEY:SECRET@bucket/x`, `s3://bucket/x?secret_key=...`) or an Optuna storage URL
(`postgresql://user:PASSWORD@host/db`) may carry a credential. Messages and logs show such a URI through
`redact`. A spec's `search.storage` is frozen into `<store>/<sweep>/spec.yaml` and compared on every run, so a
credential in it is refused (`written_secret`): it is written as `${VAR}`, which `expand_env` fills from the
environment where the storage is opened, and only the reference is ever written.
"""

from __future__ import annotations

import os
import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@")
# pyarrow's S3 takes access_key, secret_key and session_token as query parameters; databases take password=
_SECRET_PARAM = re.compile(r"(?P<name>[?&][^=&\s]*(?:secret|password|passwd|token|access_key|credential|signature)"
                           r"[^=&\s]*=)(?P<value>[^&\s]*)", re.I)
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")


def redact(text: str) -> str:
    """`text` with every URI's secrets replaced by *** (the rest kept, so it still says where)."""
    def hide(value: str) -> str:  # a ${VAR} reference is no secret: it says where the secret comes from
        return value if _REFERENCE.fullmatch(value) else "***"

    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{hide(m['secret'])}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}{hide(m['value'])}", text)


def written_secret(uri: str) -> str | None:
    """What secret `uri` spells out (None where each one is a `${VAR}` reference or there is none)."""
    for match in _USERINFO.finditer(uri):
        if not _REFERENCE.fullmatch(match["secret"]):
            return "a password"
    for match in _SECRET_PARAM.finditer(uri):
        if match["value"] and not _REFERENCE.fullmatch(match["value"]):
            return f"a {match['name'].strip('?&=')}"
    return None


def expand_env(text: str) -> str:
    """`${VAR}` references filled from the environment; KeyError naming the first one that is not set."""
    def value(match: re.Match[str]) -> str:
        if match["name"] not in os.environ:
            raise KeyError(match["name"])
        return os.environ[match["name"]]

    return _REFERENCE.sub(value, text)
