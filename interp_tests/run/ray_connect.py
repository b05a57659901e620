"""Joining a Ray cluster for `--interp-ray ADDRESS` (`local`, `auto`, `HOST:PORT`, `ray://HOST:PORT`): the
address, Ray's import, and the connection with the authentication the cluster uses. No pytest here, and
nothing from the run: the options read addresses with it, `cluster.py` connects with it.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from ..common.errors import InterpTestsError

RAY_EXTRA = 'pip install "interp-tests[ray]"'
CONNECT_TIMEOUT_S = 10.0


class ClusterError(InterpTestsError):
    """--interp-ray cannot be used as given (Ray missing, an address that answers nothing, ...): one line."""


# ----------------------------------------------------------------------------- connecting
def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--interp-ray needs Ray, which is not installed here: {RAY_EXTRA}") from None
    return ray


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `HOST:PORT` or `ray://HOST:PORT`; None for `local` and `auto`."""
    if address in ("local", "auto"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--interp-ray {address!r}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


TOKEN_MODE_SET_HERE: list[bool] = []  # [True] while this process runs in token mode because a join here turned it on


def restore_auth_mode() -> None:
    """Undo the token mode a join turned on (Ray sets RAY_AUTH_MODE in os.environ for the process and its
    children): the next connection of this process asks its own cluster again."""
    if TOKEN_MODE_SET_HERE:
        TOKEN_MODE_SET_HERE.clear()
        os.environ.pop("RAY_AUTH_MODE", None)
        try:
            from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

            Config.initialize("")  # Ray caches the mode and the token: re-read both, as Ray does when it turns the mode on
            AuthenticationTokenLoader.instance().reset_cache()
        except (ImportError, AttributeError):
            pass


def connect(address: str) -> bool:
    """Start (local) or join (auto, HOST:PORT, ray://HOST:PORT) a Ray cluster; True when this call connected
    (and so the run disconnects at its end, `ClusterRun.close`), False when the process was connected already.
    An address where nothing answers is one ClusterError within CONNECT_TIMEOUT_S, before Ray is asked."""
    import logging

    target = host_port(address)
    if target is not None:  # asked before Ray is imported: a wrong address costs a second, not Ray's retries
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ClusterError(
                f"--interp-ray {address}: nothing answers at {target[0]}:{target[1]} ({exc.strerror or exc}); start the head "
                "with `ray start --head` there, or give --interp-ray local to start Ray on this machine"
            ) from None
    if address == "auto" and not os.environ.get("RAY_ADDRESS") and _local_cluster() is None:
        raise ClusterError("--interp-ray auto: no running Ray cluster found (RAY_ADDRESS is not set and no `ray start --head` runs here); give HOST:PORT, or local")
    ray = ray_module()
    if ray.is_initialized():
        return False  # the caller's own connection (a notebook's ray.init()): used, and left open
    token_on = target is not None and not address.startswith("ray://") and _match_auth_mode(address, target)
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # Ray's own connection errors: one line
        if token_on:
            restore_auth_mode()
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; a cluster with token authentication (the default of `ray start` since Ray 2.59) needs RAY_AUTH_MODE=token "
            "and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) in this environment too"
        )
        raise ClusterError(f"--interp-ray {address}: Ray could not connect: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}") from None
    return True


def _local_cluster() -> str | None:
    """The GCS address of the cluster a `ray start --head` on this machine runs, if any."""
    try:
        return Path(tempfile.gettempdir(), "ray", "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def cluster_wants_token(target: tuple[str, int]) -> bool | None:
    """Whether the GCS at HOST:PORT refuses a request without Ray's authentication token (True), accepts it
    (False), or cannot tell (None: an older Ray, or an answer of another kind). One request, milliseconds:
    a client that names no cluster id skips Ray's 20 s of connection retries, and the GCS answers either
    "missing token" or "wrong cluster id"."""
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]
        from ray.exceptions import AuthenticationError
    except ImportError:  # Ray before token authentication (2.59)
        return None
    host = f"[{target[0]}]" if ":" in target[0] else target[0]  # an IPv6 address keeps its brackets
    try:
        client = GcsClient(address=f"{host}:{target[1]}", cluster_id="0" * 56)
        client.internal_kv_get(b"interp-tests-probe", None, timeout=CONNECT_TIMEOUT_S)
    except AuthenticationError as exc:
        text = str(exc)
        return True if "InvalidAuthToken" in text else False if "WrongClusterID" in text else None
    except Exception:
        return None
    return False


def _match_auth_mode(address: str, target: tuple[str, int]) -> bool:
    """Join a cluster with the authentication it uses. Ray's `auto` turns token authentication on whenever a
    token file exists here, and an explicit address never does; both are wrong for some clusters (a head
    started before the token existed, `ray.cluster_utils.Cluster`, a `ray start` with the token on). So ask
    the cluster: a cluster that wants the token gets it (from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token, as Ray reads it), one that does not is joined without it."""
    if os.environ.get("RAY_AUTH_MODE") or not cluster_wants_token(target):
        return False  # the mode the user set, or a cluster without authentication: Ray's explicit-address join
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:
        return False
    if not maybe_enable_token_auth_if_token_available(warn_if_disabled=False):  # sets RAY_AUTH_MODE=token (os.environ)
        raise ClusterError(
            f"--interp-ray {address}: the cluster uses Ray's token authentication and no token is here: set RAY_AUTH_TOKEN "
            "(or RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` on its head prints it)"
        )
    TOKEN_MODE_SET_HERE.append(True)
    return True
