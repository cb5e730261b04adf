"""CMCD (CTA-5004) parsing: what hls.js and dash.js send, the edges of the syntax, and hostile input."""

from __future__ import annotations

import random
import string

import pytest

from origin.cmcd import MAX_CHARS, MAX_LIST, MAX_MEMBERS, CmcdReport, from_request, parse_fields, report_of

# CTA-5004's own example payload (section 5.1)
SPEC_EXAMPLE = (
    'bl=21300,br=3200,bs,cid="faec5fc2-ac30-11ea-bb37-0242ac130002",d=4004,dl=18500,mtp=48100,'
    'nor="..%2F300kbps%2Ftrack.m4v",nrr="12323-48763",ot=v,pr=1.08,rtp=12000,sf=d,'
    'sid="6e2fb550-c457-11e9-bb97-0800200c9a66",st=v,su,tb=6141'
)
# what hls.js 1.7.4 put on a part request of this project's LL-HLS stream
HLS_JS_PART = (
    'bl=0,br=717,cid="demo",d=500,dl=0,mtp=700,nor="898205435.1.m4s",ot=v,rtp=3600,sf=h,'
    'sid="9ea83da4-773f-46ea-9662-27dc6c20bd8a",st=ll,su'
)


def test_the_spec_example():
    r = report_of(parse_fields(SPEC_EXAMPLE))
    assert r == CmcdReport(
        sid="6e2fb550-c457-11e9-bb97-0800200c9a66",
        cid="faec5fc2-ac30-11ea-bb37-0242ac130002",
        object_type="v",
        format="d",
        stream_type="v",
        buffer_s=21.3,
        bitrate_bps=3_200_000.0,
        throughput_bps=48_100_000.0,
        top_bitrate_bps=6_141_000.0,
        requested_throughput_bps=12_000_000.0,
        duration_s=pytest.approx(4.004),
        deadline_s=18.5,
        playback_rate=1.08,
        starved=True,
        startup=True,
        next_object="..%2F300kbps%2Ftrack.m4v",
        next_range="12323-48763",
    )


def test_what_hls_js_sends():
    r = report_of(parse_fields(HLS_JS_PART))
    assert (r.sid, r.cid, r.format, r.stream_type, r.object_type) == (
        "9ea83da4-773f-46ea-9662-27dc6c20bd8a",
        "demo",
        "h",
        "ll",
        "v",
    )
    assert r.buffer_s == 0.0 and r.bitrate_bps == 717_000.0 and r.startup and not r.starved


def test_bare_keys_booleans_and_absent_keys():
    r = report_of(parse_fields("bs=?1,su=?0"))
    assert r.starved and not r.startup
    empty = report_of({})
    assert empty == CmcdReport() and empty.version == 1 and empty.playback_rate is None


def test_v2_inner_lists_count_their_first_member():
    fields = parse_fields('br=(3200 1500);x=1,bl=(21300;ot=v 900;ot=a),mtp=(),v=2,nor=("next.m4s";r="1-2")')
    assert fields["br"] == (3200, 1500) and fields["bl"] == (21300, 900) and fields["mtp"] == ()
    r = report_of(fields)
    assert r.bitrate_bps == 3_200_000.0 and r.buffer_s == 21.3 and r.throughput_bps is None and r.version == 2
    assert r.next_object is None  # a list is not a string
    assert len(parse_fields("br=(" + " ".join(["1"] * 40) + ")")["br"]) == MAX_LIST


def test_strings_unescape_and_whitespace_between_members():
    fields = parse_fields(r'cid="a \"quoted\" \\ name" ,  sid="x" ,	bl=5')
    assert fields == {"cid": 'a "quoted" \\ name', "sid": "x", "bl": 5}


def test_the_last_of_a_repeated_key_wins_and_headers_follow_the_query():
    assert parse_fields("bl=1,bl=2")["bl"] == 2
    headers = {"CMCD-Request": "bl=900,mtp=2000", "CMCD-Session": 'sid="h",sf=d', "CMCD-Object": "br=300,ot=v"}
    r = from_request("bl=100,su", headers)
    assert (r.buffer_s, r.throughput_bps, r.sid, r.format, r.bitrate_bps, r.startup) == (
        0.9,
        2_000_000.0,
        "h",
        "d",
        300_000.0,
        True,
    )
    assert from_request(None, {}) is None
    assert from_request("@@@", {"CMCD-Status": ",,,"}) is None  # nothing readable: no report
    assert from_request("com.example-key=1,bs=?0", {"CMCD-Session": 'sid="' + "x" * 65 + '"'}) is None


@pytest.mark.parametrize(
    "text",
    [
        "bl=12x",  # junk after a number
        "bl=1e5",  # not an SF number
        "bl=",
        "bl =5",
        'sid="unterminated',
        'sid="tab\there"',  # control characters are not string characters
        "sid=:aGVsbG8=:",  # a byte sequence: CMCD has none
        "bs=?2",
        "br=(1 2",
        "br=(1,2)",
        "Bl=5;",  # a parameter without a key
        "bl=1234567890123456",  # more than 15 digits
    ],
)
def test_a_member_that_does_not_read_is_skipped_alone(text):
    assert parse_fields(f"mtp=100,{text},tb=300") == {"mtp": 100, "tb": 300}


@pytest.mark.parametrize(
    "fields, attribute",
    [
        ({"bl": -1}, "buffer_s"),
        ({"bl": 10**12}, "buffer_s"),  # longer than a day
        ({"br": True}, "bitrate_bps"),  # a boolean is not a number
        ({"br": "3000"}, "bitrate_bps"),
        ({"mtp": 10**9}, "throughput_bps"),  # 1 Tb/s
        ({"pr": 1000}, "playback_rate"),
        ({"sid": "x" * 65}, "sid"),  # CTA-5004: at most 64 characters
        ({"sid": ""}, "sid"),
        ({"sid": 12}, "sid"),
        ({"cid": "c" * 129}, "cid"),
        ({"ot": "video"}, "object_type"),  # only the tokens CTA-5004 defines
        ({"sf": "x"}, "format"),
        ({"st": 1}, "stream_type"),
    ],
)
def test_values_of_the_wrong_type_or_out_of_range_are_dropped(fields, attribute):
    assert getattr(report_of(fields), attribute) is None


def test_bs_and_su_are_only_true_when_true():
    assert not report_of({"bs": 1, "su": "yes"}).starved
    assert not report_of({"su": "yes"}).startup
    assert report_of({"v": 0}).version == 1 and report_of({"v": True}).version == 1


def test_size_bounds():
    assert parse_fields("bl=1," + "x" * MAX_CHARS) == {}  # too long: not read at all
    many = ",".join(f"k{i}={i}" for i in range(MAX_MEMBERS + 50))
    assert len(parse_fields(many)) == MAX_MEMBERS
    # a payload of only commas or only junk members stops at the member bound too
    assert parse_fields("," * 4000) == {}


ALPHABET = string.ascii_letters + string.digits + ' ,;=()"?:\\\t-.*%&/\x00\x7f\u00e9\u0663'


def test_random_junk_never_raises_and_stays_bounded():
    rng = random.Random(5004)
    for _ in range(3000):
        size = rng.choice((1, 5, 20, 100, 600))
        text = "".join(rng.choice(ALPHABET) for _ in range(size))
        if rng.random() < 0.5:  # junk spliced into a real payload
            cut = rng.randrange(len(HLS_JS_PART))
            text = HLS_JS_PART[:cut] + text + HLS_JS_PART[cut:]
        fields = parse_fields(text)
        assert len(fields) <= MAX_MEMBERS
        assert all(len(k) <= 64 for k in fields)
        report = report_of(fields)
        assert report.sid is None or len(report.sid) <= 64
        from_request(text, {"CMCD-Request": text[::-1]})  # headers too: whatever comes back, nothing raises


@pytest.mark.parametrize(
    "text, fields",
    [
        ('sid="' + "a" * 4000, {}),
        ("br=(" + "1 " * 2000 + ")", {"br": (1,) * MAX_LIST}),
        ("a;" * 2000, {}),
        ("=" * 4000, {}),
        ("bl=1;" + "x;" * 2000, {}),
        ("bl=1;" + "x;" * 2000 + "y", {"bl": 1}),
    ],
)
def test_pathological_payloads(text, fields):
    assert parse_fields(text) == fields


def test_the_readme_s_cdn_cache_key_is_the_tested_one():
    from tests.support.procs import CDN_HTTP, CMCD_FREE_ARGS
    from tests.support.readme import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("### Viewer quality (CMCD)") :]
    start = section.index("```nginx\n") + len("```nginx\n")
    documented = section[start : section.index("\n```", start)].splitlines()
    tested = CMCD_FREE_ARGS.replace("{{", "{").replace("}}", "}").strip().splitlines()
    assert [line.strip() for line in documented[: len(tested)]] == [line.strip() for line in tested]
    key = documented[-1].strip()
    assert key.startswith("proxy_cache_key ") and key in CDN_HTTP
