"""Range requests against hostile headers: bounded digits, range counts and answer sizes (RFC 9110 14, nginx)."""

import aiohttp
import pytest

from origin.app import create_app
from origin.ranges import MAX_RANGES, ByteRange, Unsatisfiable, coalesce, parse_ranges

SIZE = 10_000
DATA = bytes(i % 251 for i in range(SIZE))
URL = "/live/demo/360p/7.m4s"


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    (tmp_path / "demo" / "360p").mkdir(parents=True)
    (tmp_path / "demo" / "360p" / "7.m4s").write_bytes(DATA)
    (tmp_path / "demo" / "360p" / "8.m4s").write_bytes(b"")
    (tmp_path / "demo" / "360p" / "9.m4s").write_bytes(DATA[:100])
    return await aiohttp_client(create_app(root=tmp_path))


async def get(client, value: str, path: str = URL, method: str = "GET"):
    r = await client.request(method, path, headers={"Range": value})
    return r, await r.read()


@pytest.mark.parametrize(
    "value",
    ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, "bytes=9999999999999999999-"],
)
async def test_huge_numbers_are_unsatisfiable_not_a_crash(client, value):
    r, body = await get(client, value)
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{SIZE}"
    assert r.headers["Cache-Control"] == "no-store"
    assert body == b"416: range not satisfiable\n"


async def test_leading_zeros_are_not_digits_that_count(client):
    r, body = await get(client, "bytes=" + "0" * 3000 + "5-" + "0" * 3000 + "9")
    assert r.status == 206 and body == DATA[5:10]
    assert r.headers["Content-Range"] == f"bytes 5-9/{SIZE}"


async def test_more_than_max_ranges_sends_the_whole_file(client):
    spec = ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(MAX_RANGES + 1))
    r, body = await get(client, f"bytes={spec}")
    assert r.status == 200 and body == DATA
    spec = ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(MAX_RANGES))
    r, body = await get(client, f"bytes={spec}")
    assert r.status == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
    assert len(body) <= SIZE


@pytest.mark.parametrize(
    "spec",
    [",".join(["0-"] * 8), ",".join(f"{i * 100}-" for i in range(8)), ",".join(["-10000"] * 8), "0-4999,5000-9999"],
)
async def test_overlapping_and_adjacent_ranges_never_send_more_than_the_file(client, spec):
    r, body = await get(client, f"bytes={spec}")
    assert r.status == 206 and body == DATA and len(body) == SIZE
    assert r.headers["Content-Range"] == f"bytes 0-{SIZE - 1}/{SIZE}"


async def test_many_small_ranges_whose_framing_outgrows_the_file_send_it_whole(client):
    r, body = await get(client, "bytes=0-0,2-2,4-4,6-6", path="/live/demo/360p/9.m4s")
    assert r.status == 200 and body == DATA[:100]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("-5", DATA[-5:]), ("-99999", DATA), ("9990-", DATA[9990:]), ("9995-99999", DATA[9995:])],
)
async def test_suffix_and_open_ranges(client, spec, expected):
    r, body = await get(client, f"bytes={spec}")
    assert r.status == 206 and body == expected
    assert r.headers["Content-Range"] == f"bytes {SIZE - len(expected)}-{SIZE - 1}/{SIZE}"


@pytest.mark.parametrize("spec", ["-0", f"{SIZE}-", f"{SIZE}-{SIZE + 5},{SIZE * 2}-"])
async def test_ranges_past_the_end_are_unsatisfiable(client, spec):
    r, _body = await get(client, f"bytes={spec}")
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    "value", ["bytes=abc", "bytes=5-2", "bytes=1-2-3", "items=0-1", "bytes=", "bytes=-", "bytes=0-1,,2-3", "0-1"]
)
async def test_invalid_syntax_is_ignored(client, value):
    r, body = await get(client, value)
    assert r.status == 200 and body == DATA


async def test_an_empty_file_is_sent_whole(client):
    r, body = await get(client, "bytes=0-", path="/live/demo/360p/8.m4s")
    assert r.status == 200 and body == b""


async def test_multipart_is_parseable_and_keeps_first_appearance_order(client):
    r = await client.get(URL, headers={"Range": "bytes=500-599, 0-99,50-149 ,9000-"})
    assert r.status == 206 and r.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    reader = aiohttp.MultipartReader.from_response(r)
    got = []
    while (part := await reader.next()) is not None:
        assert part.headers["Content-Type"] == "video/iso.segment"
        got.append((part.headers["Content-Range"], await part.read()))
    assert got == [
        (f"bytes 500-599/{SIZE}", DATA[500:600]),
        (f"bytes 0-149/{SIZE}", DATA[0:150]),
        (f"bytes 9000-9999/{SIZE}", DATA[9000:]),
    ]


async def test_head_with_range_gives_the_length_of_the_answer(client):
    r, body = await get(client, "bytes=10-19", method="HEAD")
    assert r.status == 206 and body == b"" and r.headers["Content-Length"] == "10"


async def test_if_range_with_another_etag_sends_the_whole_file(client):
    r = await client.get(URL, headers={"Range": "bytes=0-9", "If-Range": '"not-this-one"'})
    assert r.status == 200 and await r.read() == DATA


def test_parse_bounds():
    assert parse_ranges("bytes=0-9", 100) == [ByteRange(0, 9)]
    assert parse_ranges("BYTES = 0-9", 100) == [ByteRange(0, 9)]
    assert parse_ranges("bytes=0-" + "1" * 18, 100) == [ByteRange(0, 99)]
    with pytest.raises(Unsatisfiable):
        parse_ranges("bytes=0-" + "1" * 19, 100)
    assert parse_ranges("bytes=" + "0-0," * 100 + "0-0", 100) is None
    assert parse_ranges("bytes=\u0661-\u0669", 100) is None  # Arabic-Indic digits are not a range
    assert parse_ranges("bytes=0-9\n", 100) is None


def test_coalesce_merges_touching_ranges_in_place():
    rs = [ByteRange(10, 12), ByteRange(0, 2), ByteRange(20, 30), ByteRange(3, 9)]
    assert coalesce(rs) == [ByteRange(0, 12), ByteRange(20, 30)]
    assert coalesce([ByteRange(0, 1), ByteRange(5, 6), ByteRange(2, 4)]) == [ByteRange(0, 6)]
    assert coalesce([ByteRange(5, 6), ByteRange(0, 1)]) == [ByteRange(5, 6), ByteRange(0, 1)]
