"""The media clock: rebasing, jump absorption, constant-frame-rate scheduling."""

from fractions import Fraction

from packager.sources.clock import CfrScheduler, Rebaser, grid_ticks


def test_rebaser_anchors_first_timestamp():
    r = Rebaser(anchor_s=Fraction(1000))
    assert r.media_s("v", Fraction(5), Fraction(1, 30)) == 1000
    assert r.media_s("v", Fraction(5) + Fraction(1, 30), Fraction(1, 30)) == 1000 + Fraction(1, 30)


def test_rebaser_absorbs_jumps_forward_and_back_once_for_all_streams():
    r = Rebaser(anchor_s=Fraction(0))
    r.media_s("v", Fraction(10), Fraction(1, 30))
    r.media_s("a", Fraction(10), Fraction(1024, 48000))
    # both streams jump 1 hour ahead (e.g. a DTS reset / wrap)
    v = r.media_s("v", Fraction(3610) + Fraction(1, 30), Fraction(1, 30))
    assert v == Fraction(1, 30)
    a = r.media_s("a", Fraction(3610) + Fraction(1024, 48000), Fraction(1024, 48000))
    assert abs(a - Fraction(1024, 48000)) < Fraction(1, 10)
    assert r.jumps == 1
    # and back in time
    v2 = r.media_s("v", Fraction(2), Fraction(1, 30))
    assert v2 == Fraction(2, 30)
    assert r.jumps == 2


def test_cfr_drops_duplicates_and_fills_small_holes():
    c = CfrScheduler(frame_ticks=3000, start_ticks=0)
    assert c.slots(0) == [0]
    assert c.slots(1000) == []  # too early: same slot
    assert c.slots(3100) == [3000]
    assert c.slots(12000) == [6000, 9000, 12000]  # a 2-frame hole repeated
    assert c.repeated == 2 and c.dropped == 1


def test_cfr_does_not_fill_long_gaps():
    c = CfrScheduler(frame_ticks=3000, start_ticks=0, max_fill=30)
    c.slots(0)
    assert c.slots(3000 * 100) == [300000]
    assert c.gaps == 1


def test_vfr_input_maps_to_grid_monotonically():
    c = CfrScheduler(frame_ticks=3000, start_ticks=0)
    import random

    rnd = random.Random(7)
    t, out = 0, []
    for _ in range(500):
        t += rnd.choice([1500, 3000, 4500, 6000, 2000])
        out.extend(c.slots(t))
    assert out == sorted(out) and len(set(out)) == len(out)
    assert all(x % 3000 == 0 for x in out)


def test_grid_ticks():
    assert grid_ticks(Fraction(1), 3000, 90000) == 90000
    assert grid_ticks(Fraction(1) + Fraction(1, 90000), 3000, 90000) == 93000
