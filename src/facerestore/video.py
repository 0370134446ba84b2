"""Video: every frame's faces restored, streamed from decoder to encoder, everything else kept.

Frames are decoded, restored and encoded one at a time, so memory does not depend on the clip's length and
nothing is written to disk but the output, which appears atomically (a temporary name, then a rename).
Every stream that is not the picture (sound, subtitles) is copied packet for packet; each frame keeps its
timestamp, so a variable frame rate stays variable and the frame count is the input's.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from facerestore import flicker, runtime, temporal, tracking
from facerestore.detection import Face
from facerestore.errors import ImageError, option
from facerestore.files import atomic_target
from facerestore.image_io import DEFAULT_MAX_PIXELS, Picture
from facerestore.options import AUTO, VideoOptions
from facerestore.pipeline import CropRestorer, FaceRefiner, FaceReuse, Restorer

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
FrameProgress = Callable[[int, int | None], None]  # (frames done, frames expected or None)
_EIGHT_BIT_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "rgb24"}
_COPYABLE = ("audio", "subtitle", "data")


class VideoError(ImageError):
    """The file cannot be read or written as a video (no video stream, truncated, unsupported)."""


@dataclass
class TrackRecord:
    """One face track: the frames it spans, how many it was restored in (in how many of those the
    restorer ran, the others carrying its last crop along; in how many the detector had missed it and its
    place was predicted), its flicker figures."""

    first_frame: int
    last_frame: int
    frames: int = 0
    restorer_runs: int = 0
    predicted: int = 0
    flicker: flicker.Figures = field(default_factory=flicker.Figures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "restorer_runs": self.restorer_runs,
            "predicted": self.predicted,
            "flicker": self.flicker.to_dict(),
        }


@dataclass
class VideoReport:
    """What happened to one clip: the report's record (``to_dict`` for its JSON)."""

    frames_in: int = 0
    frames_out: int = 0
    corrupt_packets: int = 0  # could not be decoded at all: skipped, the clip goes on
    corrupt_frames: int = 0  # decoded with damage the decoder concealed: restored and kept
    fps: float | None = None
    duration_s: float | None = None
    size_in: list[int] | None = None
    size_out: list[int] | None = None
    faces: int = 0  # faces restored, summed over frames
    tracks: dict[int, TrackRecord] = field(default_factory=dict)
    face_model: str | None = None
    bg_upsampler: str | None = None
    copied_streams: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    flicker: flicker.Figures = field(default_factory=flicker.Figures)  # over every track

    def to_dict(self) -> dict[str, Any]:
        return vars(self) | {
            "tracks": {track_id: record.to_dict() for track_id, record in self.tracks.items()},
            "flicker": self.flicker.to_dict() | {"frame_pairs": self.flicker.warping.count},
        }


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def restore_video(
    source: Path,
    target: Path,
    restorer: Restorer,
    options: VideoOptions | None = None,
    progress: FrameProgress | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VideoReport:
    """Restores ``source`` into ``target`` (written atomically); one VideoError line when it cannot."""
    options = options or VideoOptions()
    restorer = for_video(restorer)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(target) as temp, _open_input(source) as container:
        _check_frame_size(container.streams.video[0], source, max_pixels)
        return _transcode(container, temp, restorer, options, progress or (lambda done, total: None))


def for_video(restorer: Restorer) -> Restorer:
    """The restorer a clip uses. On a CPU a clip's background takes Lanczos when it is 'auto' and faces are
    searched for at one detection scale: a photo's defaults there cost seconds a frame. The faces keep the
    photo's restorer: the compact network would run a clip at 480p near real time (benchmarks/video_speed.py)
    but, trained on animation, it paints faces flat with dark slits for eyes (docs/video-faces.jpg), so it
    is a choice (--face-model realesr-compact-x4), not the default. Accelerators are left as they are."""
    options = restorer.options
    if runtime.uses_accelerator(options.device):
        return restorer
    changes: dict[str, object] = {
        "detection": options.detection.model_copy(update={"max_side": options.detection.base_side})
    }
    if options.bg_upsampler == "auto":
        changes["bg_upsampler"] = "none"
    return restorer.with_options(options.model_copy(update=changes)) if changes else restorer


@contextlib.contextmanager
def _open_input(source: Path) -> Iterator[Any]:
    """The input container, with PyAV's errors turned into one VideoError line."""
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"{source}: not a readable video ({_reason(error)})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{source}: has no video stream")
        yield container
    finally:
        container.close()


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())[:160]


def _transcode(
    container: Any, temp: Path, restorer: Restorer, options: VideoOptions, progress: FrameProgress
) -> VideoReport:
    video_in = container.streams.video[0]
    _check_supported(video_in, container.name)
    scale = _clip_scale(restorer, container.name)
    report = _describe_input(video_in, container)
    report.face_model, report.bg_upsampler = restorer.plan.face_model.name, restorer.plan.bg_upsampler
    try:
        output = av.open(str(temp), "w", format=_muxer_for(temp))
    except (av.error.FFmpegError, ValueError) as error:
        raise VideoError(f"{temp.suffix}: cannot write this video format ({_reason(error)})") from None
    with output:
        width, height = _output_size(video_in, scale)
        video_out = _video_stream(output, video_in, width, height, options)
        turns = _quarter_turns(container.name)
        if turns:
            video_out.set_display_rotation(90 * turns)  # shown as the source is: rotation metadata kept
        copies = {stream.index: output.add_stream_from_template(stream) for stream in _copyable(container)}
        report.copied_streams = [stream.type for stream in container.streams if stream.index in copies]
        report.size_out = [width, height]
        started = time.perf_counter()
        clip = _Clip(restorer, _FaceFollower(restorer, options, report), report, (width, height), turns)
        try:
            _stream_through(container, _Outputs(output, video_out, copies), clip, progress)
        except av.error.FFmpegError as error:  # a file cut short mid-stream, a full disk
            raise VideoError(
                f"{container.name}: stopped at frame {report.frames_in} ({_reason(error)})"
            ) from None
        report.timings["total"] = round(time.perf_counter() - started, 3)
    return report


@dataclass(frozen=True)
class _Outputs:
    container: Any
    video: Any
    copies: dict[int, Any]  # input stream index -> its copy in the output


def _stream_through(container: Any, outputs: _Outputs, clip: _Clip, progress: FrameProgress) -> None:
    """Every packet once: the picture's decoded, restored and encoded; the others copied as they are."""
    video_in = container.streams.video[0]
    for packet in container.demux():
        if packet.stream.index in outputs.copies:
            _copy(packet, outputs.copies[packet.stream.index], outputs.container)
        elif packet.stream is video_in:
            for frame in _decoded(packet, clip.report):
                _encode(_restored(frame, clip), outputs.video, outputs.container)
                # face crops change size from frame to frame; without this the heap's holes add up
                runtime.release_freed_memory()
                clip.report.frames_out += 1
                progress(clip.report.frames_out, video_in.frames or None)
    for packet in outputs.video.encode(None):
        outputs.container.mux(packet)


def _quarter_turns(source: str) -> int:
    """The source's display rotation (a phone's portrait clip) in counter-clockwise quarter turns, read from
    its first frame; 0 when it has none or is not a multiple of 90 degrees."""
    with contextlib.suppress(av.error.FFmpegError, StopIteration), av.open(source) as probe:
        degrees = next(probe.decode(video=0)).rotation
        if degrees % 90 == 0:
            return int(degrees // 90) % 4
    return 0


def _check_frame_size(stream: Any, source: Path, max_pixels: int) -> None:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > max_pixels:
        raise VideoError(
            f"{source}: {width}x{height} frames exceed the limit of {max_pixels / 1e6:g} megapixels "
            f"(raise it with {option('max_pixels')})"
        )


def _check_supported(stream: Any, name: str) -> None:
    if stream.codec_context.format is None:
        raise VideoError(f"{name}: the video codec '{stream.codec_context.name}' cannot be decoded here")
    pixel_format = stream.codec_context.format.name
    if pixel_format not in _EIGHT_BIT_FORMATS:
        raise VideoError(
            f"{name}: {pixel_format} video (10-bit or HDR) is not supported yet: facerestore writes 8-bit "
            f"video, which would lose its depth; convert it to 8-bit first"
        )


def _describe_input(stream: Any, container: Any) -> VideoReport:
    report = VideoReport()
    report.size_in = [stream.codec_context.width, stream.codec_context.height]
    report.fps = round(float(stream.average_rate), 3) if stream.average_rate else None
    if container.duration:
        report.duration_s = round(container.duration / av.time_base, 3)
    return report


def _muxer_for(temp: Path) -> str:
    """The output container by the target's extension (the temporary file has the same one)."""
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".m4v": "mp4", ".avi": "avi"}.get(
        temp.suffix.lower(), "mp4"
    )


def _clip_scale(restorer: Restorer, name: str) -> float:
    scale = restorer.options.scale
    if scale == AUTO:
        raise VideoError(f"{name}: {option('scale')} auto is for still pictures; a clip needs a number")
    return float(scale)


def _output_size(stream: Any, scale: float) -> tuple[int, int]:
    """The scaled frame size, rounded to even sides: 4:2:0 video needs them."""
    width = max(2, round(stream.codec_context.width * scale / 2) * 2)
    height = max(2, round(stream.codec_context.height * scale / 2) * 2)
    return width, height


def _video_stream(output: Any, source: Any, width: int, height: int, options: VideoOptions) -> Any:
    rate = source.average_rate or Fraction(30)
    stream = output.add_stream(options.codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # Every frame keeps its own timestamp (variable rates stay variable): the encoder counts in the source's
    # time base, not in ticks of the average rate.
    stream.time_base = stream.codec_context.time_base = source.time_base
    stream.options = {"crf": str(options.crf), "preset": options.preset}
    return stream


def _copy(packet: Any, stream: Any, output: Any) -> None:
    if packet.dts is None and packet.pts is None:
        return  # the demuxer's end-of-stream marker carries no data
    packet.stream = stream
    output.mux(packet)


def _decoded(packet: Any, report: VideoReport) -> Iterator[Any]:
    """The packet's frames; a corrupt packet is counted and skipped, never the end of the clip."""
    try:
        frames = packet.decode()
    except av.error.InvalidDataError:
        report.corrupt_packets += 1
        return
    for frame in frames:
        report.frames_in += 1
        report.corrupt_frames += frame.is_corrupt
        yield frame


class _FaceFollower:
    """Each frame's faces, tracked and smoothed from frame to frame (or as detected, when not stabilizing),
    each track's restored crop blended with its previous one, and the clip's flicker figures measured."""

    def __init__(self, restorer: Restorer, options: VideoOptions, report: VideoReport) -> None:
        self.restorer, self.options, self.report = restorer, options, report
        self.active = not restorer.options.aligned  # an aligned crop is one face filling every frame
        self.stabilize = self.active and options.stabilize
        self.tracks = tracking.Tracks()
        self.previous: np.ndarray | None = None
        self.seen: tuple[flicker.SeenFace, ...] = ()  # the current frame's faces, in the order restored
        self.scene_cut = False
        self.memories: dict[int, temporal.FaceMemory] = {}
        self.keys: dict[int, temporal.KeyCrop] = {}
        self.meter = flicker.Meter()

    def faces(self, picture: Picture, seconds: float) -> list[Face] | None:
        """The faces to restore; tracked even when not stabilizing, so that the figures can follow them."""
        if not self.active:
            return None
        small = tracking.thumbnail(picture.pixels)
        self.scene_cut = tracking.is_scene_cut(self.previous, small)
        self.previous = small
        found = self.restorer.detect(picture)
        self.tracks, tracked = tracking.step(self.tracks, found, seconds, self.scene_cut)
        # A face the detector lost for a frame or two stays restored, carried from its track's key (below).
        predicted = tracking.predicted(self.tracks, seconds) if self.stabilize else []
        filled = [item for item in predicted if item.track_id in self.keys]
        for item in tracked + filled:
            record = self.report.tracks.setdefault(
                item.track_id, TrackRecord(self.tracks.frame, self.tracks.frame)
            )
            record.last_frame = self.tracks.frame
            record.frames += 1
        for item in filled:
            self.report.tracks[item.track_id].predicted += 1
        self.seen = tuple(
            flicker.SeenFace(item.track_id, detected, item.face if self.stabilize else detected)
            for item, detected in zip(tracked, found, strict=True)
        ) + tuple(flicker.SeenFace(item.track_id, None, item.face) for item in filled)
        used = [face.used for face in self.seen]
        alive = {track.id for track in self.tracks.tracks}  # a scene cut ends every track, and its memory
        self.memories = {key: memory for key, memory in self.memories.items() if key in alive}
        self.keys = {track_id: key for track_id, key in self.keys.items() if track_id in alive}
        return used

    def reuser(self) -> FaceReuse | None:
        return self._reuse if self.active else None

    def _reuse(self, index: int, before: np.ndarray, run: CropRestorer) -> np.ndarray:
        """The track's key carried to this frame, or the restorer's crop (the track's new key). A predicted
        face is only carried, else left unrestored: the restorer on a guessed place could paint a face onto
        whatever hid it."""
        seen = self.seen[index]
        track_id, key = seen.track_id, self.keys.get(seen.track_id)
        source = temporal.flow_source(before)
        if seen.detected is None and key is not None:
            carried = temporal.carry_along(key, source, before)
            if carried is None:
                return temporal.enlarged(before, key.restored.shape[0])
        else:
            every = self.options.restore_every if self.stabilize else 1
            carried = temporal.carry(key, source, before, every)
        if carried is not None:
            crop, self.keys[track_id] = carried
            return crop
        self.report.tracks[track_id].restorer_runs += 1
        crop = run(before)
        self.keys[track_id] = temporal.key_crop(source, before, crop)
        return crop

    def refiner(self) -> FaceRefiner | None:
        return self._blend if self.stabilize and self.options.temporal_blend > 0 else None

    def _blend(self, index: int, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        track_id = self.seen[index].track_id
        crop, self.memories[track_id] = temporal.blend(
            self.memories.get(track_id), temporal.flow_source(before), after, self.options.temporal_blend
        )
        return crop

    def measure(self, before: np.ndarray, after: np.ndarray) -> None:
        """Adds the frame's flicker figures (``before``, ``after``: the frame upright, RGB) to the report."""
        frame = flicker.Frame(self.tracks.frame, self.scene_cut, before, after, self.seen)
        self.meter, whole, tracks = flicker.measure(self.meter, frame)
        self.report.flicker += whole
        for track_id, figures in tracks.items():
            record = self.report.tracks.get(track_id)  # none: a face lost as a segment's warm-up ended
            if record is not None:
                record.flicker += figures


@dataclass
class _Clip:
    """What every frame of one clip shares on its way through."""

    restorer: Restorer
    follower: _FaceFollower
    report: VideoReport
    size: tuple[int, int]  # output width, height, as stored
    quarter_turns: int  # counter-clockwise quarter turns that show the stored frames upright


def _restored(frame: Any, clip: _Clip) -> Any:
    """The frame restored upright (faces are only found upright), then turned back to how it is stored."""
    stored = frame.to_ndarray(format="rgb24")
    picture = Picture(pixels=np.ascontiguousarray(np.rot90(stored, clip.quarter_turns)))
    report = clip.report
    seconds = float(frame.pts * frame.time_base) if frame.pts is not None else report.frames_in / 30.0
    follower = clip.follower
    started = time.perf_counter()
    faces = follower.faces(picture, seconds)
    timings = {"track": time.perf_counter() - started} if faces is not None else {}
    # Frames skip the per-face analysis (~0.1 s a face), so face model 'auto' takes the plan's model for
    # every face: it also keeps a face from switching restorer, and flickering, between frames.
    result = clip.restorer.restore(
        picture, faces=faces, reuse=follower.reuser(), refine=follower.refiner(), analyse=False
    )
    report.faces += len(result.faces)
    restored = result.picture.pixels
    if restored.ndim == 2:
        restored = np.repeat(restored[..., None], 3, axis=2)
    restored = restored[..., :3]
    if faces is not None:
        started = time.perf_counter()
        follower.measure(picture.pixels, restored)
        timings["flicker"] = time.perf_counter() - started
    for stage, spent in (timings | result.timings).items():
        report.timings[stage] = round(report.timings.get(stage, 0.0) + spent, 3)
    restored = np.rot90(restored, -clip.quarter_turns)
    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(restored), format="rgb24")
    if (out.width, out.height) != clip.size:
        out = out.reformat(width=clip.size[0], height=clip.size[1])
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def _encode(frame: Any, stream: Any, output: Any) -> None:
    for packet in stream.encode(frame):
        output.mux(packet)


# -- segments: a long clip split at keyframes, restored on several machines, joined by stream copy

WARMUP_FRAMES = 8  # frames before a segment restored only to settle its face tracks' smoothing


@dataclass(frozen=True)
class Segment:
    """The frames with ``start <= pts < end`` (``end`` None: to the clip's end), ``start`` a keyframe's pts.
    Restoring begins at ``warmup`` (a few frames earlier), so the temporal filters have history at
    ``start``; ``first_frame`` is the number of frames before ``start``."""

    index: int
    start: int
    end: int | None
    warmup: int
    first_frame: int


def plan_segments(source: Path, seconds: float) -> list[Segment]:
    """Cuts at keyframes into segments of at least ``seconds`` (read from the packets; nothing decoded)."""
    with _open_input(source) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
    frames = sorted(pts for pts, _ in packets)
    if not frames:
        return [Segment(0, 0, None, 0, 0)]
    least = seconds / float(stream.time_base)
    starts = [frames[0]]
    for pts in sorted(pts for pts, keyframe in packets if keyframe):
        if pts - starts[-1] >= least and frames[-1] - pts >= least:
            starts.append(pts)
    position = {pts: index for index, pts in enumerate(frames)}
    return [
        Segment(
            index,
            start,
            starts[index + 1] if index + 1 < len(starts) else None,
            frames[max(0, position[start] - WARMUP_FRAMES)],
            position[start],
        )
        for index, start in enumerate(starts)
    ]


def segment_path(target: Path, index: int) -> Path:
    """Where a segment of ``target`` is written: a temporary name of ``target``'s (see files.py)."""
    return target.parent / f".{target.name}.segment{index:05d}.part{target.suffix}"


def restore_segment(
    source: Path,
    target: Path,
    segment: Segment,
    restorer: Restorer,
    options: VideoOptions | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VideoReport:
    """Restores one segment's frames into ``segment_path(target, segment.index)``: the picture only, each
    frame with its own timestamp, encoded as a whole clip would be."""
    options = options or VideoOptions()
    restorer = for_video(restorer)
    path = segment_path(target, segment.index)
    with _open_input(source) as container:
        video_in = container.streams.video[0]
        _check_frame_size(video_in, source, max_pixels)
        _check_supported(video_in, container.name)
        report = _describe_input(video_in, container)
        report.face_model, report.bg_upsampler = restorer.plan.face_model.name, restorer.plan.bg_upsampler
        with av.open(str(path), "w", format=_muxer_for(path)) as output:
            size = _output_size(video_in, _clip_scale(restorer, container.name))
            video_out = _video_stream(output, video_in, *size, options)
            warmup = VideoReport()  # what the warm-up frames did is not this segment's to report
            follower = _FaceFollower(restorer, options, warmup)
            clip = _Clip(restorer, follower, warmup, size, _quarter_turns(container.name))
            container.seek(segment.warmup, stream=video_in)
            for frame in _segment_frames(container, segment, clip, report):
                _encode(_restored(frame, clip), video_out, output)
                report.frames_out += 1
            for packet in video_out.encode(None):
                output.mux(packet)
    shift = segment.first_frame - warmup.frames_in  # the follower counted the warm-up frames too
    for record in report.tracks.values():
        record.first_frame += shift
        record.last_frame += shift
    return report


def _segment_frames(container: Any, segment: Segment, clip: _Clip, report: VideoReport) -> Iterator[Any]:
    """The frames from ``segment.warmup`` to its end; those before ``start`` are restored (their faces
    tracked) but not yielded, and from ``start`` on the clip reports into ``report``."""
    for packet in container.demux(container.streams.video[0]):
        for frame in _decoded(packet, VideoReport()):
            if frame.pts is None or frame.pts < segment.warmup:
                continue
            if segment.end is not None and frame.pts >= segment.end:
                return
            if frame.pts < segment.start:
                clip.report.frames_in += 1
                _restored(frame, clip)
                continue
            if clip.report is not report:
                clip.report = clip.follower.report = report
            report.frames_in += 1
            report.corrupt_frames += frame.is_corrupt
            yield frame


def join_segments(source: Path, target: Path, reports: Sequence[VideoReport]) -> VideoReport:
    """Joins the restored segments of ``source`` into ``target`` (atomically) by stream copy, with the
    source's sound, subtitles and rotation; the segment files are removed. One report for the clip: each
    segment's tracks renumbered in order, a face that crosses a segment boundary counted as two tracks.
    A join that already happened (its worker lost after the rename) is not repeated."""
    parts = [segment_path(target, index) for index in range(len(reports))]
    if target.exists() and not any(part.exists() for part in parts):  # joined by a worker lost since
        with _open_input(source) as container:
            return joined_report(reports, [stream.type for stream in _copyable(container)])
    with atomic_target(target) as temp, _open_input(source) as container, contextlib.ExitStack() as stack:
        segments = [stack.enter_context(av.open(str(part))) for part in parts]
        output = stack.enter_context(av.open(str(temp), "w", format=_muxer_for(temp)))
        video_out = output.add_stream_from_template(segments[0].streams.video[0])
        turns = _quarter_turns(container.name)
        if turns:
            video_out.set_display_rotation(90 * turns)
        kept = _copyable(container)
        copies = {stream.index: output.add_stream_from_template(stream) for stream in kept}
        video = itertools.chain.from_iterable(
            ((packet, video_out) for packet in part.demux(part.streams.video[0])) for part in segments
        )
        others = ((packet, copies[packet.stream.index]) for packet in container.demux(kept)) if kept else ()
        for packet, stream in heapq.merge(video, others, key=_packet_seconds):
            _copy(packet, stream, output)
        report = joined_report(reports, [stream.type for stream in kept])
    for part in parts:
        part.unlink(missing_ok=True)
    return report


def _copyable(container: Any) -> list[Any]:
    """The streams copied as they are: everything but the picture."""
    return [stream for stream in container.streams if stream.type in _COPYABLE]


def _packet_seconds(item: tuple[Any, Any]) -> float:
    """When a packet is decoded, for interleaving (the end-of-stream markers, without a time, go first)."""
    packet = item[0]
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else float("-inf")


def joined_report(reports: Sequence[VideoReport], copied: list[str]) -> VideoReport:
    first = reports[0]
    report = VideoReport(
        fps=first.fps,
        duration_s=first.duration_s,
        size_in=first.size_in,
        size_out=first.size_out,
        face_model=first.face_model,
        bg_upsampler=first.bg_upsampler,
        copied_streams=copied,
    )
    for part in reports:
        for counter in ("frames_in", "frames_out", "corrupt_packets", "corrupt_frames", "faces", "flicker"):
            setattr(report, counter, getattr(report, counter) + getattr(part, counter))
        for stage, seconds in part.timings.items():
            report.timings[stage] = round(report.timings.get(stage, 0.0) + seconds, 3)
        for record in sorted(part.tracks.values(), key=lambda record: record.first_frame):
            report.tracks[len(report.tracks)] = record
    return report


# -- clips held in memory (the server's uploads)


def container_extension(data: bytes) -> str | None:
    """The container an upload's first bytes announce, as a file extension; None for anything else."""
    if data[4:8] == b"ftyp":
        return ".mov" if data[8:12] == b"qt  " else ".mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, or WebM when its document type says so
        return ".webm" if b"webm" in data[:64] else ".mkv"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    return None


def clip_size(data: bytes, name: str = "upload") -> tuple[int, int]:
    """A clip's frame width and height, read from its header; one VideoError line when it has none."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise VideoError(f"{name}: has no video stream")
            context = container.streams.video[0].codec_context
            return context.width, context.height
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"{name}: not a readable video ({_reason(error)})") from None


def frame_at(data: bytes, seconds: float) -> np.ndarray:
    """The clip's frame shown at ``seconds`` (the last one past the end), upright, as RGB."""
    container: Any
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        container.seek(max(0, int(seconds / float(stream.time_base))), stream=stream)
        shown = None
        for frame in container.decode(stream):
            if shown is not None and frame.time is not None and frame.time > seconds:
                break
            shown = frame
    if shown is None:
        raise VideoError("the clip has no frame to show")
    turns = int(shown.rotation // 90) % 4 if shown.rotation % 90 == 0 else 0
    return np.ascontiguousarray(np.rot90(shown.to_ndarray(format="rgb24"), turns))
