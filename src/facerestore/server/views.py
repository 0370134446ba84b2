"""The API's JSON views of jobs and models, and its image responses."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from facerestore import registry
from facerestore.options import RestoreOptions, http_fields
from facerestore.restoration import auto_fallback_note, resolve_face_model
from facerestore.server.http import ApiError
from facerestore.server.jobs import JobState
from facerestore.server.restore import EncodedImage, RestoreOutcome
from facerestore.server.state import RestoreJob, ServerState, iso_time

SERVER_ONLY_INFO = ("path",)  # file-system details stay on the server


def job_links(job: RestoreJob) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    links: dict[str, Any] = {"self": base, "cancel": f"{base}/cancel"}
    if job.state is JobState.SUCCEEDED and job.outcome is not None:
        links["result"] = f"{base}/result"
        links["input"] = f"{base}/input"
        if job.outcome.is_video:
            links["frame"] = f"{base}/frame"  # ?at=SECONDS&side=before|after
        links["faces"] = [
            {"before": f"{base}/faces/{index}/before", "after": f"{base}/faces/{index}/after"}
            for index in range(len(job.outcome.face_thumbnails))
        ]
    return links


def job_view(state: ServerState, job: RestoreJob) -> dict[str, Any]:
    progress = job.progress
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.state.value,
        "progress": {
            "stage": progress.stage,
            "done": progress.done,
            "total": progress.total,
            "fraction": 1.0 if job.state is JobState.SUCCEEDED else progress.fraction,
        },
        "created": iso_time(job.created),
        "started": iso_time(job.started),
        "finished": iso_time(job.finished),
        "error": job.error,
        "links": job_links(job),
    }
    if job.state is JobState.QUEUED:
        view["queue_position"] = state.jobs.queue_position(job)
    if job.cancel_requested.is_set() and not job.state.finished:
        view["cancel_requested"] = True
    if job.finished is not None:
        view["expires"] = iso_time(job.finished + state.config.retention_seconds)
    if job.outcome is not None:
        view["result"] = job.outcome.metadata
    return view


def find_job(state: ServerState, job_id: str) -> RestoreJob:
    job = state.jobs.get(job_id)
    if job is None:
        retention = f"{state.config.retention_seconds:g}"
        raise ApiError(404, f"no such job (finished jobs are deleted {retention} s after they finish)")
    return job


def finished_outcome(job: RestoreJob) -> RestoreOutcome:
    if job.state is JobState.SUCCEEDED and job.outcome is not None:
        return job.outcome
    if job.state is JobState.FAILED:
        raise ApiError(409, f"the job failed: {job.error}")
    if job.state is JobState.CANCELLED:
        raise ApiError(409, "the job was cancelled")
    raise ApiError(409, f"the job is {job.state.value}: poll GET /v1/jobs/{job.id} until it has succeeded")


def image_response(image: EncodedImage, filename: str, *, download: bool = False) -> Response:
    disposition = "attachment" if download else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="{filename}.{image.extension}"'}
    return Response(image.data, media_type=image.media_type, headers=headers)


def models_view(state: ServerState) -> dict[str, Any]:
    """The models and the option choices the page offers, from the registry and the option declarations."""
    rows = [registry.model_info(entry) for entry in registry.MODELS]
    auto = resolve_face_model("auto")
    choices = {field.name: list(field.choices) for field in http_fields(RestoreOptions) if field.choices}
    return {
        "models": [{k: v for k, v in row.items() if k not in SERVER_ONLY_INFO} for row in rows],
        "choices": choices,
        "auto_face_model": auto.name,
        "auto_fallback_note": auto_fallback_note(auto),
        "limits": {"max_upload_bytes": state.config.max_upload_bytes},
    }
