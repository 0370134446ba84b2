"""Video through the same command as photos: every frame restored, frame count, timestamps and sound kept,
bad clips one line each while the rest of the batch goes on. Clips are built here from real photos."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from facerestore import RestoreOptions, Restorer
from facerestore.cli import main
from facerestore.video import for_video

FAST = ["--face-model", "realesr-compact-x4", "--bg-upsampler", "none", "--preset", "ultrafast"]
SIDE = (320, 240)
SAMPLE_RATE = 16000


def pan_frames(shared_dir: Path, count: int) -> list[np.ndarray]:
    """A slow pan across a real photo of two people."""
    photo = np.asarray(Image.open(shared_dir / "data/real/gfpgan-whole/Blake_Lively.jpg").convert("RGB"))
    return [
        np.ascontiguousarray(photo[60 : 60 + SIDE[1], 100 + 6 * i : 100 + 6 * i + SIDE[0]])
        for i in range(count)
    ]


def write_clip(path: Path, frames: Sequence[np.ndarray], pts: Sequence[int], time_base: Fraction) -> None:
    """An H.264 clip with the given frame timestamps and a generated AAC tone as its sound."""
    with av.open(str(path), "w") as output:
        video = output.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = *SIDE, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        audio = output.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        for pixels, stamp in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        seconds = float(pts[-1] * time_base) + 0.2
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE)).astype(
            np.float32
        )
        for start in range(0, tone.size, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            output.mux(audio.encode(chunk))
        output.mux(audio.encode(None))


def frame_stamps(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [frame.pts for frame in container.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]


@pytest.fixture(scope="module")
def clips(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    frames = pan_frames(shared_dir, 6)
    steady, varying = folder / "steady.mp4", folder / "varying.mkv"
    write_clip(steady, frames, [i * 1000 for i in range(6)], Fraction(1, 8000))  # 8 frames/s
    write_clip(varying, frames, [0, 90, 150, 400, 430, 700], Fraction(1, 1000))  # a variable frame rate
    return {"steady": steady, "varying": varying}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["-q", *args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def steady_out(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The steady clip restored with the video defaults (stabilized), and its report.json beside it."""
    out = tmp_path_factory.mktemp("steady-out")
    command = ["restore", str(clips["steady"]), "-o", str(out), "--report", str(out / "report.json"), *FAST]
    assert main(["-q", *command]) == 0
    return out


def test_a_clip_keeps_its_frames_timestamps_and_sound(
    clips: dict[str, Path], steady_out: Path, tmp_path: Path
) -> None:
    report = steady_out / "report.json"
    restored = steady_out / "steady.mp4"
    assert frame_stamps(restored) == frame_stamps(clips["steady"]) and len(frame_stamps(restored)) == 6
    assert audio_packets(restored) == audio_packets(clips["steady"])
    with av.open(str(restored)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (640, 480)
    [record] = json.loads(report.read_text())
    video = record["video"]
    assert (video["frames_in"], video["frames_out"], video["corrupt_packets"], video["corrupt_frames"]) == (
        6,
        6,
        0,
        0,
    )
    assert video["faces"] >= 6 and video["copied_streams"] == ["audio"] and record["size_out"] == [640, 480]
    tracks = video["tracks"].values()  # the same faces followed through the pan, one id each
    assert len(tracks) == video["faces"] // 6 and all(
        t["frames"] == 6 and t["first_frame"] == 0 for t in tracks
    )
    assert not [p for p in steady_out.iterdir() if p.name.startswith(".")], "written atomically"
    (tmp_path / "plain-new-file").touch()
    assert restored.stat().st_mode == (tmp_path / "plain-new-file").stat().st_mode  # not the temp's 0600


FIGURES = ("landmark_jitter", "landmark_jitter_detected", "warping_error", "warping_error_input")


def clip_record(capsys: pytest.CaptureFixture[str], clip: Path, out: Path, *options: str) -> dict[str, Any]:
    """The clip's report record, restored with ``options``."""
    report = out / "report.json"
    code, err = run(capsys, "restore", str(clip), "-o", str(out), "--report", str(report), *FAST, *options)
    assert code == 0, err
    [record] = json.loads(report.read_text())
    assert isinstance(record, dict)
    return record


def test_a_clips_report_holds_flicker_figures_lower_when_stabilized(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], steady_out: Path, tmp_path: Path
) -> None:
    """Each track and the clip: landmark jitter of the landmarks the paste used and as detected, the faces'
    warping error and the input's; smoothing and blending must show in them (the pan moves steadily, so what
    the per-frame run adds is the restorer's and the detector's own flicker)."""
    [stabilized] = json.loads((steady_out / "report.json").read_text())
    per_frame = clip_record(capsys, clips["steady"], tmp_path / "off", "--no-stabilize")
    assert "flicker" in stabilized["timings"]
    for video in (stabilized["video"], per_frame["video"]):
        records = [video["flicker"], *(track["flicker"] for track in video["tracks"].values())]
        assert video["tracks"] and video["flicker"]["frame_pairs"] == 5
        assert all(math.isfinite(record[name]) and record[name] > 0 for record in records for name in FIGURES)
    on, off = stabilized["video"]["flicker"], per_frame["video"]["flicker"]
    assert on["landmark_jitter_detected"] == off["landmark_jitter_detected"] == off["landmark_jitter"]
    assert on["landmark_jitter"] < 0.8 * off["landmark_jitter"], (on, off)
    assert on["warping_error"] < 0.7 * off["warping_error"], (on, off)
    assert on["warping_error_input"] == off["warping_error_input"]
    for track in stabilized["video"]["tracks"].values():  # the first frame's crop, carried along the pan
        assert 1 <= track["restorer_runs"] < track["frames"] == 6
    assert all(track["restorer_runs"] == 6 for track in per_frame["video"]["tracks"].values())


def test_a_face_the_detector_misses_for_a_frame_stays_in_its_track(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    """A grey bar across the face in one frame (a hand passing) drops its score under a strict threshold:
    stabilized, the track goes on through that frame with the face predicted where it was heading (and,
    the flow not trusting the occluded crop, left unrestored there rather than guessed at); per frame, the
    face is missing from it."""
    frames = pan_frames(shared_dir, 8)
    frames[4] = frames[4].copy()
    frames[4][108:138, 4:129] = 128  # the face: x 4-129, y 48-251
    clip = tmp_path / "bar.mp4"
    write_clip(clip, frames, [i * 1000 for i in range(8)], Fraction(1, 8000))
    strict = ("--threshold", "0.995")  # the face scores 0.997 or more in each frame, 0.990 behind the bar
    stabilized = clip_record(capsys, clip, tmp_path / "on", *strict)["video"]["tracks"]
    per_frame = clip_record(capsys, clip, tmp_path / "off", *strict, "--no-stabilize")["video"]["tracks"]
    spans = [(t["first_frame"], t["last_frame"], t["frames"], t["predicted"]) for t in stabilized.values()]
    assert spans == [(0, 7, 8, 1)]
    assert [(t["frames"], t["predicted"]) for t in per_frame.values()] == [(7, 0)]


def test_a_clip_without_faces_reports_no_flicker(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    tree = np.asarray(Image.open(shared_dir / "data/real/misc/tree_alpha_16bit.png").convert("RGB"))
    frames = [
        np.ascontiguousarray(cv2.resize(tree, (400, 300))[20 : 20 + SIDE[1], 8 * i : 8 * i + SIDE[0]])
        for i in range(3)
    ]
    clip = tmp_path / "tree.mp4"
    write_clip(clip, frames, [0, 1000, 2000], Fraction(1, 8000))
    video = clip_record(capsys, clip, tmp_path / "out")["video"]
    assert video["faces"] == 0 and video["tracks"] == {}
    assert video["flicker"] == dict.fromkeys((*FIGURES, "warping_error_x_input"), None) | {"frame_pairs": 0}


def test_a_variable_frame_rate_stays_variable(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], tmp_path: Path
) -> None:
    code, err = run(capsys, "restore", str(clips["varying"]), "-o", str(tmp_path), "--scale", "1", *FAST)
    assert code == 0, err
    assert (
        frame_stamps(tmp_path / "varying.mkv")
        == frame_stamps(clips["varying"])
        == [0, 90, 150, 400, 430, 700]
    )
    assert audio_packets(tmp_path / "varying.mkv") == audio_packets(clips["varying"])


def test_bad_clips_fail_alone_with_one_line(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(clips["steady"].read_bytes())
    (folder / "notes.mp4").write_text("not a video at all\n" * 20)
    (folder / "truncated.mp4").write_bytes(clips["steady"].read_bytes()[:3000])
    (folder / "empty.mov").write_bytes(b"")
    with av.open(str(folder / "sound-only.mkv"), "w") as output:  # a container with no picture
        audio = output.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
        output.mux(audio.encode(chunk))
        output.mux(audio.encode(None))
    out = tmp_path / "out"
    code, err = run(capsys, "restore", str(folder), "-o", str(out), *FAST)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 4, err
    assert any("sound-only.mkv" in line and "no video stream" in line for line in errors)
    assert all("Traceback" not in line and "internal error" not in line for line in errors)
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]
    assert len(frame_stamps(out / "good.mp4")) == 6


def test_frames_over_the_pixel_limit_are_refused(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], tmp_path: Path
) -> None:
    code, err = run(
        capsys, "restore", str(clips["steady"]), "-o", str(tmp_path), "--max-pixels", "1000", *FAST
    )
    assert code == 1 and "megapixels" in err and "--max-pixels" in err
    assert not (tmp_path / "steady.mp4").exists()


def test_a_clip_needs_a_numeric_scale(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], tmp_path: Path
) -> None:
    """'auto' resolves per picture; a clip's frames need one size, so it is refused in one line."""
    code, err = run(capsys, "restore", str(clips["steady"]), "-o", str(tmp_path), "--scale", "auto", *FAST)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "--scale auto is for still pictures" in errors[0], err
    assert not (tmp_path / "steady.mp4").exists()


def test_a_phone_clip_keeps_its_rotation_and_its_faces_are_found(
    capsys: pytest.CaptureFixture[str], shared_dir: Path, tmp_path: Path
) -> None:
    sideways = [np.ascontiguousarray(np.rot90(frame)) for frame in pan_frames(shared_dir, 3)]
    source = tmp_path / "phone.mp4"
    with av.open(str(source), "w") as output:  # stored sideways, shown upright: as phones record portrait
        video = output.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = SIDE[1], SIDE[0], "yuv420p"
        video.set_display_rotation(-90)
        for index, pixels in enumerate(sideways):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    report = tmp_path / "report.json"
    code, err = run(
        capsys, "restore", str(source), "-o", str(tmp_path / "out"), "--report", str(report), *FAST
    )
    assert code == 0, err
    with av.open(str(tmp_path / "out" / "phone.mp4")) as container:
        first = next(container.decode(video=0))
        assert first.rotation == -90 and (first.width, first.height) == (2 * SIDE[1], 2 * SIDE[0])
    assert json.loads(report.read_text())[0]["video"]["faces"] >= 3  # found upright, so restored


SUBTITLES = """1
00:00:00,000 --> 00:00:00,400
Hello there

2
00:00:00,400 --> 00:00:00,700
A second line
"""


def test_subtitles_are_copied_packet_for_packet(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], tmp_path: Path
) -> None:
    captions = tmp_path / "captions.srt"
    captions.write_text(SUBTITLES)
    source = tmp_path / "subtitled.mkv"
    with (
        av.open(str(clips["steady"])) as clip,
        av.open(str(captions)) as text,
        av.open(str(source), "w") as out,
    ):
        copies = {stream: out.add_stream_from_template(stream) for stream in (*clip.streams, *text.streams)}
        for container in (clip, text):  # the muxer interleaves by time
            for packet in container.demux():
                if packet.size:
                    packet.stream = copies[packet.stream]
                    out.mux(packet)
    code, err = run(capsys, "restore", str(source), "-o", str(tmp_path / "out"), *FAST)
    assert code == 0, err
    with av.open(str(source)) as before, av.open(str(tmp_path / "out" / "subtitled.mkv")) as after:
        assert [s.type for s in after.streams] == ["video", "audio", "subtitle"]
        kept = [
            [(bytes(p), p.pts, p.duration) for p in c.demux(subtitles=0) if p.size] for c in (before, after)
        ]
    assert kept[0] == kept[1] and [text for text, _, _ in kept[1]] == [b"Hello there", b"A second line"]


def test_on_a_cpu_a_clips_background_takes_lanczos_and_its_faces_the_photo_restorer() -> None:
    clip = for_video(Restorer(RestoreOptions()))
    assert (clip.plan.face_model.name, clip.plan.bg_upsampler) == ("realesrgan-x4plus", "none")
    assert clip.options.detection.max_side == clip.options.detection.base_side  # one detection scale
    named = for_video(
        Restorer(RestoreOptions(face_model="realesr-compact-x4", bg_upsampler="realesr-compact-x2"))
    )
    assert (named.plan.face_model.name, named.plan.bg_upsampler) == (
        "realesr-compact-x4",
        "realesr-compact-x2",
    )


def test_a_clip_with_the_default_background_says_it_takes_lanczos(
    capsys: pytest.CaptureFixture[str], clips: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    faces = ["--face-model", "realesr-compact-x4"]  # a cheap real network: this test is about the background
    code, err = run(
        capsys, "restore", str(clips["steady"]), "-o", str(tmp_path), "--report", str(report), *faces
    )
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: on a CPU clips take Lanczos for the background (realesr-compact-x4 costs seconds a frame); "
        "--bg-upsampler chooses another"
    ]
    [record] = json.loads(report.read_text())
    assert (record["face_model"], record["bg_upsampler"]) == ("realesr-compact-x4", "none")
