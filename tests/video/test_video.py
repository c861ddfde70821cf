import numpy as np
import pytest

from reskd_infer import ModelSpec
from reskd_infer.errors import NoVideoStreamError, ReskdError, UnreadableVideoError, VideoError
from reskd_infer.video import decode as decode_module
from reskd_infer.video import load_clips, probe, read_clips, read_frames, sample_indices
from reskd_infer.video.preprocess import resize_frames
from videogen import (
    CODECS,
    ROTATE_180,
    ROTATE_CLOCKWISE_90,
    frame_index,
    level_frames,
    set_mp4_rotation,
    textured_frames,
    write_audio_only,
    write_video,
)


@pytest.mark.parametrize(("name", "codec", "pix_fmt", "size"), CODECS)
def test_every_codec_and_pixel_format_decodes_to_rgb_uint8(tmp_path, name, codec, pix_fmt, size):
    path = write_video(tmp_path / name, level_frames(12, *size), codec=codec, pix_fmt=pix_fmt)
    info = probe(path)
    assert (info.height, info.width) == size
    frames = read_frames(path, [0, 5, 11, 5])
    assert frames.dtype == np.uint8 and frames.shape == (4, *size, 3)
    assert [frame_index(f) for f in frames] == [0, 5, 11, 5]


def test_sampled_clip_holds_the_frames_sampling_names(tmp_path):
    path = write_video(tmp_path / "levels.mp4", level_frames(24, 64, 80))
    for arch in ("tsn_r18", "r3d_18"):
        spec = ModelSpec(arch=arch, class_names=["a"], num_frames=4, frame_interval=2, num_clips=2, input_size=56)
        clips = read_clips(path, spec)  # resized to the short side 64 (input 56 * 256 / 224)
        expected = sample_indices(24, spec)
        assert clips.shape == (2, 4, 64, 80, 3)
        assert [[frame_index(f) for f in clip] for clip in clips] == expected.tolist()


@pytest.mark.parametrize("length", [1, 3])
def test_clips_shorter_than_needed_are_padded(tmp_path, length):
    path = write_video(tmp_path / f"short{length}.mp4", level_frames(length, 48, 64))
    for arch in ("tsn_r18", "r3d_18"):
        spec = ModelSpec(arch=arch, class_names=["a"], num_frames=8, input_size=42)  # short side 48: kept
        clip = read_clips(path, spec)[0]
        assert clip.shape == (8, 48, 64, 3)
        assert [frame_index(f) for f in clip] == sample_indices(length, spec)[0].tolist()


def test_rotation_metadata_is_applied(tmp_path):
    img = np.zeros((4, 48, 64, 3), np.uint8)
    img[:, :, :32] = 255  # left half white
    path = write_video(tmp_path / "portrait.mp4", img)
    set_mp4_rotation(path, ROTATE_CLOCKWISE_90)
    frame = read_frames(path, [0])[0]
    assert frame.shape == (64, 48, 3)  # displayed upright: portrait
    assert frame[:28].mean() > 200 and frame[36:].mean() < 50  # the left half, turned clockwise, is on top
    set_mp4_rotation(path, ROTATE_180)
    frame = read_frames(path, [0])[0]
    assert frame.shape == (48, 64, 3) and frame[:, 36:].mean() > 200 and frame[:, :28].mean() < 50


def test_decoding_stops_at_the_last_needed_frame(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", level_frames(60, 32, 32))
    converted = []
    original = decode_module._to_rgb
    monkeypatch.setattr(decode_module, "_to_rgb", lambda f: converted.append(1) or original(f))
    assert frame_index(read_frames(path, [3])[0]) == 3
    assert len(converted) == 1  # only the needed frame is converted; decoding stopped after it


def test_long_video_seeks_and_matches_sequential_decoding(tmp_path):
    total = 1800
    frames = level_frames(total, 32, 32)
    path = write_video(tmp_path / "film.mp4", frames, rate=25, gop=25)
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=6, input_size=32)
    seeking = read_clips(path, spec)
    expected = sample_indices(total, spec)[0]
    assert [frame_index(f) for f in seeking[0]] == [i % 31 for i in expected]  # levels repeat every 31 frames


def test_lying_header_is_resampled_on_the_true_count(tmp_path):
    path = write_video(tmp_path / "cut.avi", level_frames(30, 32, 32), codec="mjpeg", pix_fmt="yuvj420p")
    assert probe(path).num_frames == 30
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still claims 30 frames
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=4)
    clip = read_clips(path, spec)[0]
    got = [frame_index(f) for f in clip]
    assert max(got) < 16 and got == sorted(got)


def test_in_memory_frames_are_sampled_like_a_file(tmp_path):
    frames = textured_frames(10, 40, 50)
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=4, input_size=35)  # short side 40: kept
    from_array = load_clips(frames, spec)
    from_list = load_clips(list(frames), spec)
    assert np.array_equal(from_array, from_list)
    assert np.array_equal(from_array[0], frames[sample_indices(10, spec)[0]])


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "shaped"),
        (np.zeros((0, 8, 8, 3), np.uint8), "shaped"),
        ([], "empty"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], "different shapes"),
    ],
)
def test_bad_frame_arrays_raise_video_error(frames, message):
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=2)
    with pytest.raises(VideoError, match=message):
        load_clips(frames, spec)


def test_bad_files_raise_errors_that_name_the_file(tmp_path):
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=2)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio = write_audio_only(tmp_path / "sound.wav")
    cases = [
        (tmp_path / "missing.mp4", UnreadableVideoError, "not found"),
        (tmp_path, UnreadableVideoError, "directory"),
        (text, UnreadableVideoError, "notes.mp4"),
        (empty, UnreadableVideoError, "empty.mp4"),
        (audio, NoVideoStreamError, "no video stream"),
    ]
    for path, error, message in cases:
        with pytest.raises(error, match=message) as info:
            read_clips(path, spec)
        assert isinstance(info.value, ReskdError) and str(path) in str(info.value)


def test_truncated_stream_with_no_decodable_frame(tmp_path):
    path = write_video(tmp_path / "broken.mp4", textured_frames(10, 64, 64))
    data = bytearray(path.read_bytes())
    mdat = data.find(b"mdat")
    data[mdat + 8 :] = bytes(len(data) - mdat - 8)  # wipe every coded frame, keep the header
    path.write_bytes(bytes(data))
    spec = ModelSpec(arch="tsn_r18", class_names=["a"], num_frames=2)
    with pytest.raises(UnreadableVideoError, match="broken.mp4"):
        read_clips(path, spec)


@pytest.mark.parametrize(("h", "w", "short", "expected"), [
    (1080, 1920, 73, (73, 130)),  # 129.78: rounding down would give 129
    (1920, 1080, 73, (130, 73)),  # portrait: the long side is the height
    (720, 1280, 56, (56, 100)),  # 99.56
    (239, 321, 73, (73, 98)),  # 98.05: down and nearest agree
])
def test_resize_rounds_the_long_side_to_the_nearest_pixel(h, w, short, expected):
    frame = np.full((1, h, w, 3), 128, dtype=np.uint8)
    assert resize_frames(frame, short).shape[1:3] == expected
