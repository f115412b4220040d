"""Who may make this server's machine work: run code (Build it) or start a training run.

Two checks, both on every rerun of the pages that need them:

- the browser's address: the labs run code only for a browser on this machine;
- the Host header the browser sent: a page on another site can point a name of its own at
  127.0.0.1 (DNS rebinding) and so reach a server listening only on this machine; its requests
  then carry that name, not `localhost`. Jupyter refuses such Host headers for the same reason.

`MINITX_LABS_ALLOW_REMOTE=1` lifts both (whoever starts the server lets others in);
`MINITX_ALLOWED_HOSTS` adds names this machine is reached by (comma-separated).
"""

from __future__ import annotations

import ipaddress
import os

import streamlit as st

REMOTE_SETTING = "MINITX_LABS_ALLOW_REMOTE"
HOSTS_SETTING = "MINITX_ALLOWED_HOSTS"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def browser_address() -> str | None:
    """The browser's address as the server's socket saw it; None when it is this machine."""
    address = st.context.ip_address        # None for a loopback connection
    return address if isinstance(address, str) else None   # (AppTest's mocked runtime: local)


def request_host() -> str | None:
    """The Host header of the browser's connection; None where there is none (AppTest)."""
    try:
        host = st.context.headers.get("Host")
    except Exception:                      # no session (a bare script run)
        return None
    return host if isinstance(host, str) else None


def is_local(address: str | None) -> bool:
    """Whether a browser at this address is on this machine: a loopback address, also as the
    IPv4-mapped IPv6 one (::ffff:127.0.0.1) a server listening on every interface sees."""
    if address is None:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def host_name(host: str) -> str:
    """'localhost:8501' -> 'localhost', '[::1]:8501' -> '[::1]': the name without the port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts() -> set[str]:
    extra = {h.strip().lower() for h in os.environ.get(HOSTS_SETTING, "").split(",") if h.strip()}
    return set(LOCAL_HOSTS) | {host_name(h) for h in extra}


def host_allowed(host: str | None) -> bool:
    return host is None or host_name(host) in allowed_hosts()


def host_refusal(doing: str) -> str | None:
    """Why a request with this page's Host header may not `doing` (e.g. "run code"), or None."""
    host = request_host()
    if host_allowed(host) or os.environ.get(REMOTE_SETTING) == "1":
        return None
    return (f"This page was opened as {host_name(host)!r}, not as localhost, so it may not {doing}: another "
            f"site can give a name of its own this machine's address (DNS rebinding) and use a server "
            f"meant for this machine only. Open it as http://localhost, or, if {host_name(host)!r} is yours, "
            f"start the server with `{HOSTS_SETTING}={host_name(host)}`.")


def code_refusal() -> str | None:
    """Why this browser may not run code here (it is not on this machine, or came by another
    name), or None."""
    address = browser_address()
    if not is_local(address) and os.environ.get(REMOTE_SETTING) != "1":
        return (f"The labs run the code you write on the machine that serves this page, so anyone who can "
                f"open the page could run code there. They run only for a browser on that machine "
                f"({address} is not). Whoever starts the server can allow others: "
                f"`{REMOTE_SETTING}=1 streamlit run streamlit_app.py`.")
    return host_refusal("run code")
