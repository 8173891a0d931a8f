"""Ray token authentication (Ray >= 2.52) for the clusters this tool talks to.

Ray >= 2.60 turns token auth on for every new local cluster: ``ray.init()`` generates a token
(``~/.ray/auth_token``) if there is none, and ``ray start --head`` enables token mode whenever a
token exists. A *client*, however, only sends the token when ``RAY_AUTH_MODE=token`` is set in
its environment, and Ray never turns that on for an explicit address. So ``benchmark submit
--address http://127.0.0.1:8265`` against a fresh local head gets ``401 Unauthorized``.

Rule here, Ray's own rule for an auto-discovered local cluster extended to explicit local
addresses: when ``RAY_AUTH_MODE`` is unset and the address names this machine, use the local
token if one exists (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``, in Ray's
order). A remote cluster never receives the local token unasked: set ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``) to that cluster's token; ``RAY_AUTH_MODE`` set
either way is always obeyed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

AUTH_HINT = (
    "the Ray cluster requires a token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the cluster's token> "
    "(or RAY_AUTH_TOKEN_PATH=<file>). KubeRay with authOptions keeps it in the cluster's Secret; a head "
    "started with `ray start` uses the token of that machine (`ray get-auth-token`)."
)


def host_of(address: str) -> str:
    """Host part of ``http://host:port``, ``ray://host:port`` or ``host:port``."""
    if "://" not in address:
        address = f"tcp://{address}"
    return (urlsplit(address).hostname or "").lower()


@lru_cache(maxsize=1)
def _own_addresses() -> frozenset[str]:
    names = {"localhost", socket.gethostname().lower()}
    try:
        names.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        pass
    try:  # the address Ray itself reports for this node (what `ray start` prints)
        from ray.util import get_node_ip_address

        names.add(get_node_ip_address())
    except Exception:
        pass
    return frozenset(names)


def is_local_address(address: str) -> bool:
    host = host_of(address)
    if not host:
        return False
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return host in _own_addresses()


def local_token() -> str | None:
    """This machine's Ray token, looked up as Ray does; None when there is none."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    candidate = Path(path) if path else Path.home() / ".ray" / "auth_token"
    try:
        token = candidate.read_text().strip()
    except OSError:
        return None
    return token or None


def use_local_token(address: str | None) -> bool:
    """Whether to authenticate to ``address`` with the local token (see module docstring)."""
    return (
        address is not None
        and os.environ.get("RAY_AUTH_MODE") is None
        and is_local_address(address)
        and local_token() is not None
    )


def dashboard_headers(address: str) -> dict[str, str]:
    """HTTP headers for the Jobs API. With ``RAY_AUTH_MODE=token`` Ray adds them itself."""
    if not use_local_token(address):
        return {}
    return {"Authorization": f"Bearer {local_token()}"}


def enable_for_driver(address: str | None) -> None:
    """Before ``ray.init(address=…)`` of a local cluster: turn token mode on when a token exists."""
    if not use_local_token(address):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray caches its config; re-read it so this process sees the mode (what Ray does for 'auto')
        from ray._raylet import Config

        Config.initialize("")
    except Exception:
        pass
