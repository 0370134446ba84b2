"""HTTP API (/v1) and web page over the engine: ``facerestore serve``.

Importing this package stays light (the CLI builds its parser from it); the web stack loads in ``serve``.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING

from facerestore.server.config import ServerConfig

if TYPE_CHECKING:
    from facerestore.server.restore import Engine

__all__ = ["ServerConfig", "serve", "url_for"]


def url_for(host: str, port: int) -> str:
    try:
        shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        shown = host  # a host name
    return f"http://{shown}:{port}/"


def serve(config: ServerConfig | None = None) -> None:
    config = config or ServerConfig()
    print(
        f"facerestore: web page and API at {url_for(config.host, config.port)} "
        "(API description: /v1/openapi.json)",
        flush=True,
    )
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        note = "" if config.api_keys else "; no API key is set, so anyone who reaches it can use it"
        print(f"facerestore: listening on {config.host}, reachable from other machines{note}", flush=True)
    with _engine(config) as engine:
        _run(config, engine)


@contextlib.contextmanager
def _engine(config: ServerConfig) -> Iterator[Engine | None]:
    """The cluster's engine while the server runs, when it has one (else the app restores in-process)."""
    if config.cluster is None:
        yield None
        return
    from facerestore import cluster

    with cluster.connect(config.cluster) as client:
        print(f"facerestore: jobs run on the Dask cluster {config.cluster}", flush=True)
        yield cluster.ClusterRestorer(client)


def _run(config: ServerConfig, engine: Engine | None) -> None:
    import uvicorn

    from facerestore.server import connections
    from facerestore.server.app import create_app

    file_limit = connections.open_file_limit()
    most = connections.connection_cap(config.max_connections, file_limit)
    if most < config.max_connections:
        print(
            f"facerestore: at most {most} connections at once (the open-file limit is {file_limit:g}; "
            "raise it with ulimit -n)",
            flush=True,
        )
    uvicorn.run(
        create_app(config, engine),
        host=config.host,
        port=config.port,
        http=connections.BoundedH11Protocol.limited(most, config.header_timeout),
        backlog=connections.ACCEPT_BURST,
        log_level="info",
        server_header=False,
    )
