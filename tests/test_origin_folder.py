"""`packager origin --root DIR`: serving an output folder from disk, safely."""

import os

import pytest

from origin.app import create_app
from origin.folder import resolve_inside


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "out"
    (root / "demo" / "360p").mkdir(parents=True)
    (root / "demo" / "master.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p/index.m3u8\n")
    (root / "demo" / "manifest.mpd").write_text('<?xml version="1.0"?><MPD type="dynamic"/>')
    (root / "demo" / "360p" / "index.m3u8").write_text(
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\n7.m4s\n' + "#" * 400 + "\n"
    )
    (root / "demo" / "360p" / "init.mp4").write_bytes(b"ftyp" * 10)
    (root / "demo" / "360p" / "7.m4s").write_bytes(bytes(range(256)) * 40)
    (root / "demo" / "360p" / "7.1.m4s").write_bytes(b"part")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, root / "demo" / "360p" / "8.m4s")
    os.symlink(tmp_path, root / "evil")
    return root


async def test_serves_files_with_policy_headers(aiohttp_client, folder):
    client = await aiohttp_client(create_app(root=folder))
    r = await client.get("/live/demo/master.m3u8")
    assert r.status == 200 and r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = await client.get("/live/demo/360p/index.m3u8", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("Content-Encoding") == "gzip" and "7.m4s" in await r.text()
    r = await client.get("/live/demo/manifest.mpd")
    assert r.headers["Content-Type"] == "application/dash+xml"
    r = await client.get("/live/demo/360p/7.m4s", headers={"Range": "bytes=0-3"})
    assert r.status == 206 and await r.read() == bytes(range(4))
    r = await client.get("/live/demo/360p/7.m4s")
    assert "immutable" in r.headers["Cache-Control"] and r.headers["Content-Type"] == "video/iso.segment"
    r2 = await client.get("/live/demo/360p/7.m4s", headers={"If-None-Match": r.headers["ETag"]})
    assert r2.status == 304
    r = await client.get("/live/demo/360p/7.1.m4s")
    assert r.status == 200 and await r.read() == b"part"
    r = await client.get("/live/demo/360p/init.mp4")
    assert r.headers["Content-Type"] == "video/mp4"
    data = await (await client.get("/api/streams")).json()
    assert data["streams"][0]["name"] == "demo"


@pytest.mark.parametrize(
    "path",
    [
        "/live/demo/360p/8.m4s",  # symlink pointing out of the root
        "/live/evil/secret.txt",
        "/live/evil/out/demo/master.m3u8",
        "/live/demo/360p/%2e%2e/%2e%2e/secret.txt",
        "/live/demo/..%2f..%2fsecret.txt",
        "/live/demo/360p/..%5c..%5csecret.txt",
        "/live/demo/360p/7.m4s%00.txt",
        "/live/%2fetc/passwd",
        "/live/demo/360p/9.m4s",
        "/live/demo/a/b/c/d.m4s",
    ],
)
async def test_nothing_outside_the_root(scheme_client, folder, path):
    client = await scheme_client(create_app(root=folder))
    r = await client.get(path)
    assert r.status in (400, 404)
    assert b"top secret" not in await r.read()


def test_resolve_inside_rejects_bad_components(folder):
    assert resolve_inside(folder, ["demo", "360p", "7.m4s"]) is not None
    (folder / "demo" / "master.m3u8\n").write_text("not a name the packager writes")
    assert resolve_inside(folder, ["demo", "master.m3u8\n"]) is None
    for parts in (["demo", "..", "x"], ["demo", "360p", "8.m4s"], [".."], ["demo", "360p", "/etc/passwd"], []):
        assert resolve_inside(folder, parts) is None


async def test_methods_refused(aiohttp_client, folder):
    client = await aiohttp_client(create_app(root=folder))
    r = await client.post("/live/demo/360p/7.m4s", data=b"x")
    assert r.status == 405


@pytest.fixture
def hostile(folder, tmp_path):
    """Symlink loops and links out of the root, beside the normal ``demo`` stream."""
    rendition = folder / "demo" / "360p"
    os.symlink(rendition / "11.m4s", rendition / "10.m4s")
    os.symlink(rendition / "10.m4s", rendition / "11.m4s")
    os.symlink(folder / "demo" / "loop", folder / "demo" / "loop")
    os.symlink(folder / "spin", folder / "spin")
    outside = tmp_path / "outside" / "stolen"
    (outside / "360p").mkdir(parents=True)
    (outside / "master.m3u8").write_text("#EXTM3U\n# outside the root\n")
    (outside / "360p" / "init.mp4").write_bytes(b"outside")
    (outside / "360p" / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    os.symlink(outside, folder / "stolen")
    os.symlink(outside / "360p", folder / "demo" / "720p")
    os.symlink(folder / "demo", folder / "alias")  # a link that stays inside the root is fine
    return folder


@pytest.mark.parametrize(
    "path",
    [
        "/live/demo/360p/10.m4s",
        "/live/demo/loop/init.mp4",
        "/live/demo/loop/index.m3u8",
        "/live/spin/master.m3u8",
        "/live/spin/360p/init.mp4",
        "/live/stolen/master.m3u8",
        "/live/demo/720p/init.mp4",
    ],
)
async def test_symlink_loops_and_links_out_are_404(aiohttp_client, hostile, path):
    client = await aiohttp_client(create_app(root=hostile))
    r = await client.get(path)
    assert r.status == 404 and r.headers["Cache-Control"] == "no-store"
    assert b"outside" not in await r.read()


async def test_stream_list_stays_inside_the_root(aiohttp_client, hostile):
    client = await aiohttp_client(create_app(root=hostile))
    r = await client.get("/api/streams")
    assert r.status == 200
    streams = {s["name"]: s for s in (await r.json())["streams"]}
    assert set(streams) == {"alias", "demo"}
    assert [x["name"] for x in streams["demo"]["renditions"]] == ["360p"]
    assert streams["demo"]["live"] is True
    assert (await client.get("/live/alias/master.m3u8")).status == 200


async def test_stream_list_of_a_missing_or_looping_root_is_empty(aiohttp_client, tmp_path):
    os.symlink(tmp_path / "root", tmp_path / "root")
    for root in (tmp_path / "root", tmp_path / "absent"):
        client = await aiohttp_client(create_app(root=root))
        r = await client.get("/api/streams")
        assert r.status == 200 and await r.json() == {"streams": []}
        assert (await client.get("/live/demo/master.m3u8")).status == 404
