"""The shared network pool: one load per network however many threads ask, one session across roles."""

from __future__ import annotations

import threading

from facerestore.networks import Networks
from facerestore.pipeline import RestoreOptions, Restorer


def test_concurrent_first_use_loads_once() -> None:
    networks = Networks()
    loads: list[int] = []

    def load() -> object:
        loads.append(1)
        threading.Event().wait(0.2)  # a slow load, so the other threads arrive while it runs
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(networks._get("key", load))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1


def test_x4plus_is_loaded_once_for_every_role() -> None:
    base = Restorer(
        RestoreOptions(bg_upsampler="realesrgan-x4plus", face_model="realesrgan-x4plus", tile=128)
    )
    other = base.with_options(RestoreOptions(scale=4, bg_upsampler="realesrgan-x4plus", tile=64))
    sessions = {
        id(base.face_restorer().upscaler.session),  # type: ignore[attr-defined]
        id(base.networks.region_upscaler("cpu").session),
        id(base.background().session),  # type: ignore[attr-defined]
        id(other.background().session),  # type: ignore[attr-defined]
    }
    assert len(sessions) == 1
    assert other.background().tiles.tile == 64 and base.background().tiles.tile == 128  # type: ignore[attr-defined]


def test_least_recently_used_networks_are_dropped() -> None:
    networks = Networks(capacity=2)
    for key in ("a", "b", "a", "c"):
        networks._get(key, object)
    assert list(networks._loaded) == ["a", "c"]
