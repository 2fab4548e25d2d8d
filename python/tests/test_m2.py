"""The m2 wheel against the m2 command on the bundled demo, and its error handling."""

import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

import m2
from conftest import DEMO


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def cli_results(m2_bin, blob_path):
    """`m2 caption --format jsonl` on the 300 test scenes: caption, tokens, score per image."""
    out = run([m2_bin, "caption", "--model", str(blob_path), "--features",
               str(DEMO / "test_features.npy"), "--format", "jsonl", "-q"])
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 300
    return lines


def test_captions_equal_the_cli_on_300_scenes(model, features, cli_results):
    got = model.caption_batch(features, return_tokens=True, return_score=True)
    for k, (want, (text, tokens, score)) in enumerate(zip(cli_results, got)):
        assert text == want["caption"], k
        assert tokens == want["tokens"], k
        assert np.float32(score) == np.float32(want["score"]), k


def test_one_image_at_a_time_and_any_thread_count_give_the_batch(model, features, cli_results):
    want = [r["caption"] for r in cli_results]
    assert [model.caption(features[k]) for k in range(0, 300, 7)] == want[::7]
    assert model.caption_batch(list(features[:40]), threads=1) == want[:40]
    assert model.caption_batch(features[:40], threads=3) == want[:40]


def test_greedy_equals_the_cli(model, features, m2_bin, blob_path):
    out = run([m2_bin, "caption", "--model", str(blob_path), "--features",
               str(DEMO / "test_features.npy"), "--greedy", "--max-len", "12", "-q"])
    assert model.caption_batch(features, greedy=True, max_len=12) == out.splitlines()


def test_float16_features_and_fewer_regions(model, features):
    x = features[1]
    assert model.caption(x.astype(np.float16)) == model.caption(
        x.astype(np.float16).astype(np.float32))
    # trailing zero rows are the engine's own padding: dropping them changes nothing
    rows = int((np.abs(x).sum(axis=1) > 0).sum())
    assert rows < model.max_regions
    assert model.caption(x[:rows]) == model.caption(x)


def test_caption_png_equals_the_cli(model, m2_bin, blob_path):
    pngs = sorted((DEMO / "scenes").glob("scene_0*.png"))
    out = run([m2_bin, "caption", "--model", str(blob_path), "--image", *map(str, pngs), "-q"])
    assert [model.caption_png(p) for p in pngs] == out.splitlines()


def test_caption_image_of_the_scene_pixels_equals_the_features(model, scenes, cli_results):
    # the scenes' pixels through m2::regions give the bundled features bit for bit
    # (tests/regions_parity.rs), so the captions are the CLI's
    got = [model.caption_image(scenes[k]) for k in range(300)]
    assert got == [r["caption"] for r in cli_results]
    # dark ink on a light background is read inverted
    assert model.caption_image(255 - scenes[5]) == cli_results[5]["caption"]


def test_score_equals_m2_score(model, features, cli_results, m2_bin, blob_path, tmp_path):
    cfg = model.config
    t_len = 1 + max(len(r["tokens"]) for r in cli_results[:20])
    tokens = np.full((20, t_len), cfg["pad"], dtype=np.int64)
    for k, r in enumerate(cli_results[:20]):
        seq = [cfg["bos"], *r["tokens"]]
        tokens[k, :len(seq)] = seq
    np.save(tmp_path / "f.npy", features[:20])
    np.save(tmp_path / "t.npy", tokens)
    run([m2_bin, "score", "--model", str(blob_path), "--features", str(tmp_path / "f.npy"),
         "--tokens", str(tmp_path / "t.npy"), "-o", str(tmp_path / "lp.npy"), "-q"])
    want = np.load(tmp_path / "lp.npy")
    got = model.score(features[:20], tokens)
    assert got.dtype == np.float32 and got.shape == want.shape == (20, t_len, cfg["vocab"])
    assert np.array_equal(got, want)
    assert np.array_equal(model.score(features[3], tokens[3]), want[3])
    # the caption's score is the sum of its words' teacher-forced log-probs
    r = cli_results[3]
    words = got[3, np.arange(len(r["tokens"])), r["tokens"]]
    assert abs(words.sum() - r["score"]) < 1e-4


def test_config_memory_plan_and_from_bytes(model, blob_path):
    cfg = model.config
    assert (cfg["d_in"], cfg["max_regions"], model.d_in, model.max_regions) == (72, 4, 72, 4)
    assert len(model.vocab) == cfg["vocab"] and model.vocab[cfg["eos"]] == "<eos>"
    plan = model.memory_plan()
    assert plan["weights_bytes"] == model.blob_bytes == blob_path.stat().st_size == 516128
    assert plan["workspace_bytes"] == 204220  # as `m2 info` and the README say
    again = m2.Model.from_bytes(blob_path.read_bytes())
    assert again.caption_png(DEMO / "scenes" / "scene_01.png") == model.caption_png(
        DEMO / "scenes" / "scene_01.png")
    assert m2.Model(blob_path, mmap=False).config == cfg


def test_the_gil_is_released_while_a_batch_captions(model, features):
    big = np.concatenate([features] * 3)  # 900 images, about a second on one thread
    span = {}

    def work():
        span["start"] = time.perf_counter()
        model.caption_batch(big, threads=1)
        span["end"] = time.perf_counter()

    t = threading.Thread(target=work)
    ticks = []
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    inside = [x for x in ticks if span["start"] + 0.05 < x < span["end"] - 0.05]
    assert span["end"] - span["start"] > 0.2
    # Python ran all along: ticks all through the batch (with the GIL held there would be none)
    assert len(inside) > 1000


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 71), np.float32), "d_in 72"),
    (np.zeros((5, 72), np.float32), "1 to 4"),
    (np.zeros((0, 72), np.float32), "1 to 4"),
    (np.zeros((72,), np.float32), "[regions, 72]"),
    (np.zeros((4, 72), np.int64), "float32 or float16"),
    (np.zeros((4, 72), np.float64), "float32 or float16"),
    ("not an array", "float32 or float16"),
    (np.full((4, 72), np.nan, np.float32), "not finite"),
])
def test_bad_features_raise_value_error(model, bad, message):
    with pytest.raises(ValueError, match=None) as e:
        model.caption(bad)
    assert message in str(e.value)


def test_views_at_odd_byte_strides_read_the_right_values(model, features):
    # a field of a structured array: float32 at a 5-byte stride (float16 at 3) — read as numpy
    # sees it, not at the bytes a stride rounded down to whole items would point to
    x = features[:6]
    for dt, cast in (("<f4", np.float32), ("<f2", np.float16)):
        s = np.zeros(x.shape, dtype=[("pad", "u1"), ("v", dt)])
        s["v"] = x.astype(cast)
        v = s["v"]
        assert v.strides[-1] % v.itemsize != 0
        want = model.caption_batch(np.ascontiguousarray(v), threads=1)
        assert model.caption_batch(v, threads=1) == want
        assert model.caption(v[1]) == want[1]
        np.testing.assert_array_equal(model.score(v[0], [2, 5, 6, 1]),
                                      model.score(np.ascontiguousarray(v[0]), [2, 5, 6, 1]))
    # an as_strided view: float32 values 6 bytes apart
    raw = np.zeros(4 * 72 * 6, np.uint8)
    for i, v in enumerate(x[1].reshape(-1)):
        raw[6 * i:6 * i + 4] = np.frombuffer(np.float32(v).tobytes(), np.uint8)
    f = np.lib.stride_tricks.as_strided(raw.view(np.float32), shape=(4, 72),
                                        strides=(6 * 72, 6))
    np.testing.assert_array_equal(f, x[1])
    assert model.caption(f) == want[1]


def test_bad_arguments_raise_value_error(model, features):
    x = features[0]
    for kwargs, message in [
        ({"beam": 0}, "beam must be between 1 and 8"),
        ({"beam": 9}, "beam must be between 1 and 8"),
        ({"max_len": 0}, "max_len must be between 1 and 20"),
        ({"max_len": 21}, "max_len must be between 1 and 20"),
    ]:
        with pytest.raises(ValueError) as e:
            model.caption(x, **kwargs)
        assert message in str(e.value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'beams'"):
        model.caption(x, beams=3)
    for key in ("greedy", "return_tokens", "return_score"):
        with pytest.raises(TypeError, match=f"^{key}: "):
            model.caption(x, **{key: "yes"})
    with pytest.raises(ValueError, match="threads must be at least 1"):
        model.caption_batch(features[:2], threads=0)
    bad = features[:3].copy()
    bad[2, 0, 0] = np.inf
    with pytest.raises(ValueError, match="image 2: features: region 0 value 0 is not finite"):
        model.caption_batch(bad)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.score(x, [2, 5, 62])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.score(x, [2, -1])
    with pytest.raises(ValueError, match="integer array"):
        model.score(x, [2.0, 5.0])
    with pytest.raises(ValueError, match="2 token sequences for 3 images"):
        model.score(features[:3], np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="1 to 20 tokens"):
        model.score(x, np.full(21, 2))
    with pytest.raises(ValueError, match="uint8"):
        model.caption_image(np.zeros((48, 48), np.float32))
    with pytest.raises(ValueError, match="grayscale"):
        model.caption_image(np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="no digit found"):
        model.caption_image(np.zeros((48, 48), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        model.caption_image(np.zeros((0, 48), np.uint8))
    with pytest.raises(ValueError, match="memory plan|regions must be"):
        model.memory_plan(regions=5)


def test_file_errors_raise_os_error(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.m2"):
        m2.Model(str(tmp_path / "nope.m2"))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        model.caption_png(tmp_path / "nope.png")
    with pytest.raises(OSError):
        m2.Model(str(tmp_path))  # a directory
    fifo = tmp_path / "blob.fifo"
    os.mkfifo(fifo)
    # a writer waits, so an open that is not refused fails this test instead of hanging it
    threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()
    with pytest.raises(OSError, match="not a regular file"):
        m2.Model(str(fifo))  # mapped: refused before the open (which waited for a writer)
    junk = tmp_path / "junk.m2"
    junk.write_bytes(b"not a blob at all" * 10)
    with pytest.raises(ValueError, match="junk.m2"):
        m2.Model(str(junk))
    with pytest.raises(ValueError, match="model blob"):
        m2.Model.from_bytes(b"\0" * 64)
    not_png = tmp_path / "x.png"
    not_png.write_bytes(b"hello")
    with pytest.raises(ValueError, match="x.png"):
        model.caption_png(not_png)


def test_a_corrupted_blob_is_refused(blob_path, tmp_path):
    data = bytearray(blob_path.read_bytes())
    data[len(data) // 2] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        m2.Model.from_bytes(bytes(data))


def test_pack_equals_the_bundled_blob_and_m2_pack(blob_path, tmp_path, features):
    out = tmp_path / "demo.m2"
    n = m2.pack(DEMO / "checkpoint.safetensors", DEMO / "vocab.json", "int8a16", out,
                heads=4, regions=4, calibrate=DEMO / "calib_features.npy")
    # the bundled blob is m2-pack's output with these settings (assets/demo/RESULTS.md)
    assert n == out.stat().st_size and out.read_bytes() == blob_path.read_bytes()
    again = tmp_path / "demo2.m2"
    m2.pack(DEMO / "checkpoint.safetensors", DEMO / "vocab.json", "int8a16", again,
            heads=4, regions=4, calibrate=np.load(DEMO / "calib_features.npy"))
    assert again.read_bytes() == blob_path.read_bytes()
    f16 = tmp_path / "demo-f16.m2"
    m2.pack(DEMO / "checkpoint.safetensors", DEMO / "vocab.json", "f16", f16, heads=4, regions=4)
    # the PyTorch model's caption of that scene (assets/demo/torch_captions.json)
    torch_caption = json.loads((DEMO / "torch_captions.json").read_text())[1]
    assert m2.Model(f16).caption(features[1]) == torch_caption


def test_pack_errors(tmp_path):
    ck, vocab = DEMO / "checkpoint.safetensors", DEMO / "vocab.json"
    with pytest.raises(ValueError, match="dtype must be"):
        m2.pack(ck, vocab, "int4", tmp_path / "x.m2")
    with pytest.raises(FileNotFoundError):
        m2.pack(tmp_path / "none.safetensors", vocab, "f32", tmp_path / "x.m2")
    with pytest.raises(ValueError, match="heads"):
        m2.pack(ck, vocab, "f32", tmp_path / "x.m2", heads=3)
    with pytest.raises(ValueError, match="safetensors"):
        m2.pack(vocab, vocab, "f32", tmp_path / "x.m2")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        m2.pack(ck, vocab, "f32", ck)
    assert not (tmp_path / "x.m2").exists()


def test_out_of_range_ints_hostile_arrays_and_streams(model, features, tmp_path):
    """The third audit's findings: ints past any range name their argument in a ValueError
    (not a bare OverflowError), a zero-size batch declaring 2**40 images is a ValueError (not
    an abort), an endless stream is a bounded read, and a pipe is read with the GIL released."""
    x = features[0]
    for kwargs, message in [
        ({"beam": -1}, "beam must be between 1 and 8"),
        ({"beam": 2**70}, "beam must be between 1 and 8"),
        ({"max_len": -(2**70)}, "max_len must be between 1 and 20"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.caption(x, **kwargs)
    with pytest.raises(TypeError, match="beam"):
        model.caption(x, beam="5")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        model.caption_batch(features[:2], threads=-1)
    with pytest.raises(ValueError, match="regions must be between 1 and 4"):
        model.memory_plan(regions=-1)
    with pytest.raises(ValueError, match="beam must be between"):
        model.memory_plan(beam=2**64)
    with pytest.raises(ValueError, match="heads must be between"):
        m2.pack(DEMO / "checkpoint.safetensors", DEMO / "vocab.json", "f32",
                tmp_path / "x.m2", heads=-1)
    with pytest.raises(ValueError, match="token 18446744073709551615 at position 1"):
        model.score(x, np.array([2, 2**64 - 1], np.uint64))
    with pytest.raises(ValueError, match="0 regions"):
        model.caption_batch(np.empty((2**40, 0, 72), np.float32))
    with pytest.raises(OSError, match="larger than"):
        model.caption_png("/dev/zero")
    # a pipe whose writer is another Python thread: the read releases the GIL
    fifo = tmp_path / "scene.png"
    os.mkfifo(fifo)
    png = (DEMO / "scenes" / "scene_00.png").read_bytes()

    def writer():
        with open(fifo, "wb") as f:
            f.write(png)

    t = threading.Thread(target=writer)
    t.start()
    assert model.caption_png(fifo) == model.caption_png(DEMO / "scenes" / "scene_00.png")
    t.join()
