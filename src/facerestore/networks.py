"""Loaded networks, shared by every ``Restorer`` built on the same pool.

Each network is keyed by only the options that choose it, loads once (concurrent first requests wait for
the one load), and is shared between roles: the Real-ESRGAN x4plus session serves as face restorer,
tiny-face enlarger and background network at once. The least recently used networks are dropped beyond
``capacity``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from facerestore import registry
from facerestore.detection import SingleScaleDetector, create_detector
from facerestore.restoration import FaceRestorer, create_face_restorer
from facerestore.upscaling import (
    BackgroundUpscaler,
    ClassicalUpscaler,
    NetworkUpscaler,
    Precision,
    TileOptions,
)

Loaded = TypeVar("Loaded")
REGION_UPSCALER = "realesrgan-x4plus"  # enlarges tiny faces' neighbourhoods before a face prior


class Networks:
    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._loaded: OrderedDict[Hashable, Any] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def _get(self, key: Hashable, load: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
            value = load()
            with self._lock:
                self._loaded[key] = value
                self._loading.pop(key, None)
                while len(self._loaded) > self.capacity:
                    self._loaded.popitem(last=False)
        return value

    def detector(self, name: str, device: str, model_path: str | Path | None = None) -> SingleScaleDetector:
        return self._get(
            ("detector", name, device, model_path), lambda: create_detector(name, device, model_path)
        )

    def super_resolution(self, name: str, device: str, precision: Precision = "fp32") -> NetworkUpscaler:
        entry = registry.get_entry(name)
        return self._get(
            ("sr", name, device, precision), lambda: NetworkUpscaler(entry, device, None, precision)
        )

    def face_restorer(
        self,
        entry: registry.ModelEntry,
        device: str,
        model_path: str | Path | None = None,
        precision: Precision = "fp32",
    ) -> FaceRestorer:
        network = (
            self.super_resolution(entry.name, device, precision)
            if entry.purpose is registry.Purpose.UPSCALER
            else None
        )
        key = ("face", entry.name, device, model_path, precision)
        return self._get(key, lambda: create_face_restorer(entry.name, device, model_path, network))

    def region_upscaler(self, device: str) -> NetworkUpscaler:
        return self.super_resolution(REGION_UPSCALER, device)

    def background(self, name: str, device: str, precision: Precision, tile: int) -> BackgroundUpscaler:
        if name == "none":
            return ClassicalUpscaler()
        return self.super_resolution(name, device, precision).with_tiles(TileOptions(tile))
