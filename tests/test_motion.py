"""The motion detector and gate (rva.motion) on real footage: walkers are motion, a still scene
is not, a lights jump re-baselines instead of holding the gate open, and a still scene is
re-checked every still_refresh_s."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rva.motion import MotionDetector, MotionGate

FPS = 10


@pytest.fixture(scope="module")
def clip(vtest_path: object) -> list[np.ndarray]:
    """Frames 0-99 of vtest.avi: people walk through all of them."""
    cap = cv2.VideoCapture(str(vtest_path))
    out = [cap.read()[1] for _ in range(100)]
    cap.release()
    return out


def camera_noise(frame: np.ndarray, seed: int) -> np.ndarray:
    """The same picture as a camera delivers it again: sensor noise, then JPEG at quality 80."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], 1)


def scaled(frame: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def test_people_walking_are_motion_in_every_frame(clip: list[np.ndarray]) -> None:
    detector = MotionDetector()
    first, *rest = (detector.update(f) for f in clip)
    assert first.rebaselined
    # Measured: 2-10 % of vtest.avi's picture changes per frame; the minimum area is 0.2 %.
    assert all(m.moving and not m.rebaselined for m in rest)
    assert min(m.fraction for m in rest) > 5 * detector.min_area


def test_a_still_scene_is_no_motion_despite_sensor_noise_and_jpeg(clip: list[np.ndarray]) -> None:
    detector = MotionDetector()
    seen = [detector.update(camera_noise(clip[50], seed)) for seed in range(60)]
    assert seen[0].rebaselined
    assert not any(m.moving for m in seen[1:])
    assert max(m.fraction for m in seen[1:]) < detector.min_area


def test_one_small_person_stepping_in_is_motion(clip: list[np.ndarray]) -> None:
    """A still background, then the same picture with one walker of frame 60 in it: a distant
    person of 22×84 px (the detector's box), 0.6 % of the 768×576 frame, where frame 0 has
    nobody."""
    detector = MotionDetector()
    for seed in range(20):
        detector.update(camera_noise(clip[0], seed))
    stepped_in = clip[0].copy()
    stepped_in[160:250, 368:396] = clip[60][160:250, 368:396]
    assert detector.update(camera_noise(stepped_in, 99)).moving


def test_lights_on_and_off_do_not_leave_the_gate_open(clip: list[np.ndarray]) -> None:
    """A still scene at 10 fps; the lights go off (the picture at 35 %), then on again. Each jump
    runs the detector once on the new picture (a re-baseline); then the scene is still again and
    only the refresh runs it."""
    gate = MotionGate(still_refresh_s=5.0)
    still = clip[40]
    runs: list[tuple[int, str]] = []
    for i in range(120):
        picture = still if i < 30 or i >= 60 else scaled(still, 0.35)
        decision = gate.admit(camera_noise(picture, i), now=i / FPS)
        if decision.run:
            runs.append((i, decision.reason))
    assert runs == [(0, "rebaseline"), (30, "rebaseline"), (60, "rebaseline"), (110, "refresh")]


def test_an_exposure_ramp_closes_the_gate_soon_after_it_settles(clip: list[np.ndarray]) -> None:
    """Auto-exposure after the lights go down: the picture darkens over 1 s (10 frames), which
    is motion for a while at most; 3 s after the ramp the gate is closed again."""
    gate = MotionGate(still_refresh_s=30.0)
    still = clip[40]
    for i in range(20):
        gate.admit(camera_noise(still, i), now=i / FPS)
    ran_late = []
    for k in range(100):
        gain = 1.0 - 0.6 * min(1.0, (k + 1) / 10)
        decision = gate.admit(camera_noise(scaled(still, gain), 100 + k), now=(20 + k) / FPS)
        if decision.run and k >= 40:
            ran_late.append((k, decision.reason))
    assert ran_late == []


def test_walking_people_keep_the_gate_open_through_a_lights_jump(clip: list[np.ndarray]) -> None:
    gate = MotionGate(still_refresh_s=5.0)
    decisions = [
        gate.admit(f if i < 50 else scaled(f, 0.5), now=i / FPS) for i, f in enumerate(clip)
    ]
    assert all(d.run for d in decisions)
    assert decisions[50].reason == "rebaseline"
    assert all(d.reason == "motion" for d in decisions[52:])


def test_full_rate_while_people_move_then_hold_then_a_refresh_every_still_refresh_s(
    clip: list[np.ndarray],
) -> None:
    """People walk for 3 s, then the picture freezes (they stand still) for 17 s. The detector
    runs on every frame while they walk; after they stop, at full rate while the background
    takes the standing people in (they still differ from it: measured 4 s at 10 fps) and for
    hold_s (2 s) after; then once every still_refresh_s (4 s here)."""
    gate = MotionGate(still_refresh_s=4.0)
    decisions = []
    for i in range(200):
        picture = clip[i] if i < 30 else camera_noise(clip[29], i)
        decisions.append(gate.admit(picture, now=i / FPS))
    ran = [i for i, d in enumerate(decisions) if d.run]
    full_rate = ran[: ran.index(next(i for i in ran[1:] if i - ran[ran.index(i) - 1] > 1))]
    assert full_rate == list(range(len(full_rate)))
    last_motion = max(i for i, d in enumerate(decisions) if d.reason == "motion")
    assert 30 <= last_motion < 80
    assert last_motion + 2 * FPS - 1 <= full_rate[-1] <= last_motion + 2 * FPS  # 2 s, ± a frame
    refreshes = ran[len(full_rate) :]
    assert all(decisions[i].reason == "refresh" for i in refreshes)
    assert [b - a for a, b in zip([full_rate[-1], *refreshes], refreshes, strict=False)] == [
        4 * FPS
    ] * len(refreshes)
    assert len(refreshes) >= 2


def test_the_gate_follows_the_settings_of_rva_toml() -> None:
    from rva.config import GearSection, parse

    assert GearSection().motion_gate == "capture"
    cfg = parse("[gear]\nmotion_gate = false\nstill_refresh_s = 2\nmotion_threshold = 30\n")
    assert cfg.gear.motion_gate == "off"
    assert parse("[gear]\nmotion_gate = true\n").gear.motion_gate == "capture"
    gate = MotionGate.from_settings(cfg.gear)
    assert gate.still_refresh_s == 2 and gate.detector.threshold == 30
