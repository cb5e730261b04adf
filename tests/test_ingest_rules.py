"""Ingest settings and the gate: keys, one publisher per stream, limits (no media)."""

import pytest

from packager.config import ConfigError, StreamConfig
from packager.ingest.gate import IngestGate
from packager.settings import IngestSettings, StreamSettings, load

BASE = StreamConfig()


def write(tmp_path, text):
    p = tmp_path / "packager.toml"
    p.write_text(text)
    return p


def test_config_file_and_flags(tmp_path):
    path = write(
        tmp_path,
        """
[server]
rtmp_port = 19350
reconnect_window = 10
[defaults]
segment = 1
part = 0.25
[streams.studio1]
key = "studio-one-key"
ladder = "640x360@800k"
takeover = true
max_kbps = 8000
""",
    )
    s = load(path, BASE, ["cam2=camera-two-key"])
    assert s.rtmp_port == 19350 and s.reconnect_window_s == 10
    one = s.streams["studio1"]
    assert one.takeover and one.max_kbps == 8000 and one.key == "studio-one-key"
    assert [r.name for r in one.config.ladder.renditions] == ["360p"]
    assert float(one.config.timing.segment_s) == 1.0
    cam = s.streams["cam2"]
    assert cam.key == "camera-two-key" and float(cam.config.timing.part_s) == 0.25  # defaults apply


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[server\nrtmp_port=1", "not valid TOML"),
        ("[wat]\nx=1", "unknown section"),
        ("[server]\nrtmp_prt=1", "unknown field"),
        ("[server]\nrtmp_port=70000", "rtmp_port"),
        ("[streams.a]\nladder='640x360@800k'", "needs a key"),
        ("[streams.a]\nkey='short'", "8-256"),
        ("[streams.a]\nkey='has space in it'", "8-256"),
        ("[streams.a]\nkey='goodkey123'\nsegment=2\npart=0.3", "part"),
        ("[streams.'../x']\nkey='goodkey123'", "streams"),
        ("[streams.a]\nkey='goodkey123'\nmax_kbps='lots'", "max_kbps"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle):
        load(write(tmp_path, text), BASE, [])


def test_bad_flags():
    with pytest.raises(ConfigError, match="NAME=KEY"):
        load(None, BASE, ["nokey"])
    with pytest.raises(ConfigError, match="--stream-key"):
        load(None, BASE, ["a/b=goodkey123"])
    with pytest.raises(ConfigError, match="cannot read"):
        load(__import__("pathlib").Path("/nonexistent.toml"), BASE, [])


def gate(**kw):
    streams = {
        "a": StreamSettings(StreamConfig(name="a"), "key-for-a-1", max_kbps=kw.pop("max_kbps", 1000)),
        "b": StreamSettings(StreamConfig(name="b"), "key-for-b-1", takeover=True),
    }
    return IngestGate(IngestSettings(streams=streams, **kw))


def test_keys():
    g = gate()
    assert g.check("a", "key-for-a-1").ok
    assert g.check("a", None).status == 401
    assert g.check("a", "").status == 401
    assert g.check("a", "key-for-b-1").status == 403
    assert g.check("zzz", "key-for-a-1").status == 403
    v = g.check("a", "wrong")
    assert "wrong" not in v.reason.replace("wrong key", "") and "key-for" not in v.reason


def test_one_publisher_unless_takeover():
    g = gate()
    t = g.begin("a", "rtmp", "peer")
    assert g.check("a", "key-for-a-1").status == 409
    g.end(t)
    assert g.check("a", "key-for-a-1").ok
    tb = g.begin("b", "rtmp", "peer")
    assert g.check("b", "key-for-b-1").ok  # takeover allowed
    g.begin("b", "http", "peer2")
    assert tb.kicked and g.account(tb, 10).status == 409


def test_publisher_limit():
    g = gate(max_publishers=1)
    g.begin("a", "rtmp", "p")
    assert g.check("b", "key-for-b-1").status == 503


def test_bitrate_limits():
    g = gate(max_kbps=100)
    t = g.begin("a", "http", "p")
    now = t.started
    assert g.account(t, 10_000_000, now + 1).ok  # the first seconds may burst
    v = g.account(t, 10_000_000, now + 6)
    assert v.status == 429 and "over the limit of 100 kb/s" in v.reason
    g2 = gate(max_kbps=800, max_ingest_kbps=1000, max_publishers=4)
    t2 = g2.begin("b", "http", "p")  # no max_kbps: an equal share of the total
    assert t2.budget_kbps == 250
    assert g2.account(t2, 150_000, t2.started + 6).ok  # 240 kb/s
    assert g2.account(t2, 10_000, t2.started + 6.1).status == 429


def test_ingest_limit_fields(tmp_path):
    text = "[server]\nmax_ingest_kbps = 9000\npublisher_kbps = 3000\nrefusal_limit = 5\nrefusal_window = 30\n"
    s = load(write(tmp_path, text + "[streams.a]\nkey = 'goodkey123'\n"), BASE, [])
    assert (s.publisher_kbps, s.refusal_limit, s.refusal_window_s) == (3000, 5, 30.0)
    assert s.streams["a"].max_kbps is None and IngestGate(s).budget_kbps("a") == 3000
    for bad, needle in (
        ("publisher_kbps = 9001", "publisher_kbps"),
        ("refusal_limit = 0", "refusal_limit"),
        ("refusal_window = 0", "refusal_window"),
    ):
        with pytest.raises(ConfigError, match=needle):
            load(write(tmp_path, f"[server]\nmax_ingest_kbps = 9000\n{bad}\n"), BASE, [])
    with pytest.raises(ConfigError, match="over max_ingest_kbps"):
        load(
            write(tmp_path, "[server]\nmax_ingest_kbps = 900\n[streams.a]\nkey='goodkey123'\nmax_kbps=1000\n"), BASE, []
        )


def test_srt_streamid_forms():
    from packager.ingest.srt import StreamId, parse_streamid

    assert parse_streamid("#!::r=demo,s=k3y-value-1,m=publish") == StreamId("demo", "k3y-value-1")
    assert parse_streamid("#!::r=demo,k=abcdefgh") == StreamId("demo", "abcdefgh")
    assert parse_streamid("demo?key=abc%2Fdef") == StreamId("demo", "abc/def")
    assert parse_streamid("publish/demo/secretkey") == StreamId("demo", "secretkey")
    assert parse_streamid("demo") == StreamId("demo", None)
    for bad in ("", "#!::m=request,r=demo", "#!::garbage", "a/b?key=x", "#!::r=", "x" * 600, "publish//k"):
        assert parse_streamid(bad) is None, bad
