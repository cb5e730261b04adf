"""Delivery security in the origin: the admin zone, signed playback, tokens carried in manifests."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from origin.admin import COOKIE, REFUSAL_LIMIT
from origin.app import create_app
from packager.security import PlaybackKeys, SecuritySettings
from tests.support.live import make_live

ADMIN = "admin-token-0123456789"
SECRET = "playback-secret-0123456789-abcdefghij"


def token(stream: str = "demo", *, exp_in: float = 60, key: object = SECRET, alg: str = "HS256", **claims) -> str:
    payload = {"stream": stream, "exp": int(time.time() + exp_in), **claims}
    return jwt.encode(payload, key, algorithm=alg)  # type: ignore[arg-type]


@pytest.fixture
async def admin_client(aiohttp_client):
    store, d = make_live()
    d.publish_segments(2)
    return await aiohttp_client(create_app(store, security=SecuritySettings(admin_token=ADMIN)))


@pytest.fixture
async def signed_client(aiohttp_client):
    store, d = make_live()
    d.publish_segments(3)
    d.publish(2)
    return await aiohttp_client(create_app(store, security=SecuritySettings(playback=PlaybackKeys(secret=SECRET))))


# ---------------------------------------------------------------- admin


ADMIN_ROUTES = ["/api/streams", "/api/streams/demo/series", "/metrics", "/", "/players/index.html"]


@pytest.mark.parametrize("path", ADMIN_ROUTES)
async def test_admin_routes_need_the_token(admin_client, path):
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {ADMIN}"}):
        r = await admin_client.get(path, headers=headers)
        assert r.status == 401, (path, headers)
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await admin_client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status == 200


async def test_events_feed_needs_the_token(aiohttp_client):
    from packager.events import EventBus

    store, d = make_live()
    d.publish_segments(1)
    app = create_app(store, events=EventBus(), security=SecuritySettings(admin_token=ADMIN))
    client = await aiohttp_client(app)
    assert (await client.get("/events")).status == 401
    r = await client.get("/events", headers={"Authorization": f"bearer {ADMIN}"}, timeout=5)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    r.close()


async def test_players_media_and_health_stay_public(admin_client):
    for path in ("/players/hls.html", "/players/common.js", "/healthz", "/time", "/live/demo/master.m3u8"):
        assert (await admin_client.get(path)).status == 200, path


async def test_dashboard_sign_in_trades_the_token_for_a_session_cookie(admin_client):
    r = await admin_client.get("/")
    assert r.status == 401 and 'action="/login"' in await r.text()
    r = await admin_client.post("/login", data={"token": "not-it"}, allow_redirects=False)
    assert r.status == 401 and COOKIE not in r.cookies
    r = await admin_client.post("/login", data={"token": ADMIN}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ADMIN not in cookie
    # the client's cookie jar now sends it: the dashboard and the API it reads answer
    assert (await admin_client.get("/")).status == 200
    assert (await admin_client.get("/api/streams")).status == 200
    await admin_client.post("/logout", allow_redirects=False)
    assert (await admin_client.get("/api/streams")).status == 401


async def test_a_forged_or_expired_session_cookie_is_refused(admin_client):
    for value in ("9999999999.deadbeef", f"{int(time.time()) - 10}.00", "garbage", ""):
        admin_client.session.cookie_jar.clear()
        r = await admin_client.get("/api/streams", cookies={COOKIE: value})
        assert r.status == 401, value


async def test_refused_admin_requests_are_throttled_per_peer(admin_client):
    for _ in range(REFUSAL_LIMIT):
        assert (await admin_client.get("/api/streams")).status == 401
    r = await admin_client.get("/api/streams", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status == 429 and r.headers["Retry-After"]  # even the right token waits out the window
    assert (await admin_client.get("/live/demo/master.m3u8")).status == 200  # playback is not the admin zone


# ---------------------------------------------------------------- signed playback


MEDIA = [
    "/live/demo/master.m3u8",
    "/live/demo/manifest.mpd",
    "/live/demo/360p/index.m3u8",
    "/live/demo/360p/init.mp4",
    "/live/demo/360p/1000.m4s",
    "/live/demo/360p/1001.1.m4s",
]


@pytest.mark.parametrize("path", MEDIA)
async def test_every_manifest_and_media_object_needs_a_valid_token(signed_client, path):
    cases = {
        "missing": (None, 401),
        "expired": (token(exp_in=-5), 401),
        "another stream": (token("other"), 403),
        "tampered": (token()[:-3] + ("AAA" if not token().endswith("AAA") else "BBB"), 401),
        "wrong key": (token(key="another-secret-0123456789-abcdefghij"), 401),
        "no exp": (jwt.encode({"stream": "demo"}, SECRET, algorithm="HS256"), 401),
        "not yet": (token(nbf=int(time.time() + 60)), 401),
        "unsigned": (jwt.encode({"stream": "demo", "exp": int(time.time() + 60)}, None, algorithm="none"), 401),
        "garbage": ("not.a.jwt", 401),
    }
    for case, (value, status) in cases.items():
        r = await signed_client.get(path, params={"token": value} if value else None)
        assert r.status == status, case
        assert r.headers["Cache-Control"] == "no-store", case
        text = await r.text()
        assert text.count("\n") == 1 and (value is None or value not in text), case
    for good in (token(), token("*")):
        assert (await signed_client.get(path, params={"token": good})).status == 200
    r = await signed_client.get(path, headers={"Authorization": f"Bearer {token()}"})
    assert r.status == 200


async def test_a_query_token_is_carried_on_every_uri_the_manifests_name(signed_client):
    t = token()
    master = await (await signed_client.get("/live/demo/master.m3u8", params={"token": t})).text()
    uris = [line for line in master.splitlines() if line and not line.startswith("#")]
    assert uris and all(u.endswith(f"?token={t}") for u in uris)
    assert all(f'?token={t}"' in line for line in master.splitlines() if 'URI="' in line)
    media = await (await signed_client.get("/live/demo/360p/index.m3u8", params={"token": t})).text()
    tagged = [line for line in media.splitlines() if 'URI="' in line or (line and not line.startswith("#"))]
    assert len(tagged) > 5 and all(f"token={t}" in line for line in tagged)
    assert any(line.startswith("#EXT-X-PRELOAD-HINT") for line in tagged)
    for uri in [line.split('URI="')[1].split('"')[0] for line in tagged if 'URI="' in line][:4]:
        r = await signed_client.get("/live/demo/360p/" + uri)
        assert r.status == 200 or "RENDITION-REPORT" in uri, uri  # a URI the playlist names plays as is
    mpd = await (await signed_client.get("/live/demo/manifest.mpd", params={"token": t})).text()
    assert f'.m4s?token={t}"' in mpd and f'init.mp4?token={t}"' in mpd
    # a Bearer header is the player's own: manifests are not rewritten for it
    plain = await (await signed_client.get("/live/demo/master.m3u8", headers={"Authorization": f"Bearer {t}"})).text()
    assert "token=" not in plain


async def test_blocking_reload_with_a_token_keeps_it(signed_client):
    t = token()
    r = await signed_client.get("/live/demo/360p/index.m3u8", params={"token": t, "_HLS_msn": "1003", "_HLS_part": "0"})
    assert r.status in (200, 503)  # nothing more is published here: the hold times out (503) or answers


@pytest.mark.parametrize("kind", ["rsa", "ec"])
async def test_public_key_tokens(aiohttp_client, tmp_path, kind):
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    alg = "RS256" if kind == "rsa" else "ES256"
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    store, d = make_live()
    d.publish_segments(1)
    app = create_app(store, security=SecuritySettings(playback=PlaybackKeys(public_key=pem.decode())))
    client = await aiohttp_client(app)
    good = token(key=private, alg=alg)
    assert (await client.get("/live/demo/master.m3u8", params={"token": good})).status == 200
    # an HMAC token "signed" with the public key text must not pass (algorithm confusion)
    confused = jwt.encode({"stream": "demo", "exp": int(time.time() + 60)}, "x" * 32, algorithm="HS256")
    assert (await client.get("/live/demo/master.m3u8", params={"token": confused})).status == 401


async def test_jwks_picks_the_key_by_kid(aiohttp_client):
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("a", "b")}
    jwks = {"keys": []}
    for kid, private in keys.items():
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        jwks["keys"].append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    import json

    store, d = make_live()
    d.publish_segments(1)
    app = create_app(store, security=SecuritySettings(playback=PlaybackKeys(jwks=json.dumps(jwks))))
    client = await aiohttp_client(app)
    payload = {"stream": "demo", "exp": int(time.time() + 60)}
    for kid, private in keys.items():
        t = jwt.encode(payload, private, algorithm="ES256", headers={"kid": kid})
        assert (await client.get("/live/demo/master.m3u8", params={"token": t})).status == 200
    wrong = jwt.encode(payload, keys["a"], algorithm="ES256", headers={"kid": "b"})
    assert (await client.get("/live/demo/master.m3u8", params={"token": wrong})).status == 401
    unknown = jwt.encode(payload, keys["a"], algorithm="ES256", headers={"kid": "zzz"})
    assert (await client.get("/live/demo/master.m3u8", params={"token": unknown})).status == 401


async def test_edge_auth_endpoint_answers_for_the_original_uri(signed_client):
    def ask(uri: str, **headers: str):
        return signed_client.get("/auth/playback", headers={"X-Original-URI": uri, **headers})

    assert (await ask(f"/live/demo/360p/1000.m4s?token={token()}")).status == 204
    assert (await ask("/live/demo/360p/1000.m4s", Authorization=f"Bearer {token()}")).status == 204
    assert (await ask(f"/live/demo/360p/1000.m4s?token={token('other')}")).status == 403
    assert (await ask(f"/live/demo/360p/1000.m4s?token={token(exp_in=-1)}")).status == 401
    assert (await ask("/live/demo/360p/1000.m4s")).status == 401
    assert (await ask("/api/streams")).status == 403


async def test_the_token_never_reaches_a_log_or_metric(signed_client, caplog):
    t = token()
    bad = token(exp_in=-5)
    with caplog.at_level("DEBUG"):
        for value in (t, bad):
            await signed_client.get("/live/demo/master.m3u8", params={"token": value})
        await signed_client.get("/live/demo/360p/../../x", params={"token": t})
    metrics = await (await signed_client.get("/metrics")).text()
    # aiohttp.access is the test client's request log: the origin itself runs with access_log=None
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    for value in (t, bad):
        assert value not in logged and value not in metrics


async def test_folder_origin_checks_tokens_and_signs_manifests(aiohttp_client, tmp_path):
    (tmp_path / "demo" / "360p").mkdir(parents=True)
    (tmp_path / "demo" / "360p" / "index.m3u8").write_text(
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\n1000.m4s\n'
    )
    (tmp_path / "demo" / "360p" / "1000.m4s").write_bytes(b"media")
    app = create_app(root=tmp_path, security=SecuritySettings(playback=PlaybackKeys(secret=SECRET)))
    client = await aiohttp_client(app)
    assert (await client.get("/live/demo/360p/index.m3u8")).status == 401
    t = token()
    text = await (await client.get("/live/demo/360p/index.m3u8", params={"token": t})).text()
    assert f"1000.m4s?token={t}" in text and f'init.mp4?token={t}"' in text
    assert (await client.get("/live/demo/360p/1000.m4s", params={"token": t})).status == 200
    assert (await client.get("/live/demo/360p/1000.m4s", params={"token": token("other")})).status == 403
