"""Secrets out of everything the scheduler prints, logs, stores or sends.

Why here and at write time: a repository URL may carry ``user:password@`` or a token
(``https://x-access-token:TOKEN@github.com/...``), git echoes it in its errors, and an
error text can end up in a Slack message; a run log may echo whatever the commit under
test printed. The state database applies :class:`Redactor` to every message and run log it
stores (``State(scrub=...)``), so nothing secret is kept or delivered even when a new code
path forgets; the few places that print a URL call :func:`redact_url` themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

HIDDEN = "***"

# scheme://userinfo@ (greedy up to the last @ of the authority: a password may hold one)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#'\"<>]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&](?:access_token|private_token|token|api_key|apikey|key|password|secret|"
    r"sig|signature|auth)=)[^&\s#'\"<>]+", re.IGNORECASE)
# names of environment variables whose values are secrets
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE_KEY|"
                          r"CREDENTIAL|WEBHOOK", re.IGNORECASE)
MIN_SECRET_LEN = 8  # shorter values would redact ordinary words


def _userinfo(m: re.Match[str]) -> str:
    scheme, info = m.group("scheme"), m.group("userinfo")
    if scheme.lower().startswith(("ssh", "git+ssh")) and ":" not in info:
        return m.group(0)  # ssh://git@host: a user name, not a secret
    return f"{scheme}{HIDDEN}@"


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden: ``user:password@`` and
    tokens in the user part (``https://TOKEN@host``) become ``***@``, secret-looking query
    parameters (``?access_token=...``) ``=***``."""
    text = _USERINFO.sub(_userinfo, text)
    return _QUERY_SECRET.sub(lambda m: m.group("name") + HIDDEN, text)


class Redactor:
    """URL credentials plus known secret values (the Slack token and webhook URL, values
    of secret-looking environment variables), replaced wherever they appear."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN},
                              key=len, reverse=True)

    @classmethod
    def from_environment(cls, secrets: Iterable[str] = (),
                         environ: Mapping[str, str] | None = None) -> Redactor:
        environ = os.environ if environ is None else environ
        found = [v for k, v in environ.items() if _SECRET_NAME.search(k)]
        return cls([*secrets, *found])

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return redact_url(text)
