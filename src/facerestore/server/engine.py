"""The server's engine: one pool of loaded networks for the whole process, and up-front model checks.

Each request gets a light ``Restorer`` with its own options over the shared ``Networks`` pool, so every model
loads once per process however the requests' other options vary.
"""

from __future__ import annotations

from facerestore import registry
from facerestore.errors import OptionError
from facerestore.networks import Networks
from facerestore.pipeline import RestoreOptions, Restorer
from facerestore.restoration import resolve_face_model

SR_FACE_MODEL = "realesrgan-x4plus"  # the face restorer that needs no face-prior download


class NetworkCache:
    """The process's loaded networks, at most ``size`` of them (least recently used dropped first)."""

    def __init__(self, size: int) -> None:
        self.networks = Networks(capacity=size)

    def restorer(self, options: RestoreOptions) -> Restorer:
        return Restorer(options, self.networks)

    def preload(self, options: RestoreOptions) -> None:
        restorer = self.restorer(options)
        _ = restorer.detector, restorer.face_restorer, restorer.background


def check_models(options: RestoreOptions) -> None:
    """Refuses up front what would only fail inside a job: a model that is not installed."""
    detector = (registry.get_entry(options.detector), options.detector_model_path)
    face = (resolve_face_model(options.face_model, options.model_path), options.model_path)
    for entry, explicit_file in (detector, face):
        if explicit_file is None and not registry.is_installed(entry):
            raise OptionError(registry.missing_model_message(entry))


def auto_face_model() -> str:
    """What 'auto' resolves to on this server."""
    return resolve_face_model().name
