"""Several audio tracks in the manifests: HLS EXT-X-MEDIA rules and DASH AdaptationSets, from hand-built views."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from lxml import etree

from packager.manifest.dash import render_mpd
from packager.manifest.hls import render_master
from tests.support.views import AUDIO, V360, V720, make_view
from tests.support.xsd import validate_mpd
from tests.test_manifest_hls import attrs, tag_lines

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
BCP47 = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")

EN = replace(AUDIO, name="audio-en", language="en", label="English", default=True)
DE = replace(AUDIO, name="audio-de", language="de", label="Deutsch")
EN_AD = replace(AUDIO, name="audio-en-ad", language="en", label="English (audio description)", describes_video=True)
TRACKS = (V720, V360, EN, DE, EN_AD)
VIEWS = {
    "live": make_view(infos=TRACKS),
    "vod": make_view(infos=TRACKS, count=4, live=False),
    "ended": make_view(infos=TRACKS, count=4, live=False, ended=True),
}


def media(view) -> list[dict[str, str]]:
    return [attrs(line) for line in tag_lines(render_master(view), "#EXT-X-MEDIA")]


def audio_sets(view) -> dict[str, etree._Element]:
    root = etree.fromstring(render_mpd(view))
    return {
        a.find("d:Representation", NS).get("id"): a
        for a in root.findall(".//d:AdaptationSet[@contentType='audio']", NS)
    }


@pytest.mark.parametrize("kind", VIEWS)
def test_every_audio_track_is_one_rendition_of_one_group(kind):
    entries = media(VIEWS[kind])
    assert [m["URI"] for m in entries] == ["audio-en/index.m3u8", "audio-de/index.m3u8", "audio-en-ad/index.m3u8"]
    assert {m["TYPE"] for m in entries} == {"AUDIO"} and {m["GROUP-ID"] for m in entries} == {"audio"}
    assert [m["DEFAULT"] for m in entries] == ["YES", "NO", "NO"]
    assert all(m["AUTOSELECT"] == "YES" and m["CHANNELS"] == "2" for m in entries)
    assert all(BCP47.match(m["LANGUAGE"]) for m in entries)
    names = [m["NAME"] for m in entries]
    assert len(set(names)) == len(names) and names[1] == "Deutsch"
    assert [m.get("CHARACTERISTICS") for m in entries] == [None, None, "public.accessibility.describes-video"]
    for line in tag_lines(render_master(VIEWS[kind]), "#EXT-X-STREAM-INF"):
        assert attrs(line)["AUDIO"] == "audio"


def test_exactly_one_default_whichever_track_is_marked():
    view = make_view(infos=(V720, replace(EN, default=False), replace(DE, default=True)))
    assert [m["DEFAULT"] for m in media(view)] == ["NO", "YES"]
    unmarked = make_view(infos=(V720, replace(EN, default=False), DE))
    assert [m["DEFAULT"] for m in media(unmarked)] == ["YES", "NO"]


def test_names_stay_unique_and_undetermined_language_is_left_out():
    same = replace(DE, name="audio-2", label="English", language="und")
    entries = media(make_view(infos=(V720, EN, same)))
    assert [m["NAME"] for m in entries] == ["English", "English (2)"]
    assert "LANGUAGE" not in entries[1]


@pytest.mark.parametrize("kind", VIEWS)
def test_dash_has_an_adaptation_set_per_track_with_lang_role_and_label(kind):
    mpd = render_mpd(VIEWS[kind])
    validate_mpd(mpd)
    sets = audio_sets(VIEWS[kind])
    assert {rid: a.get("lang") for rid, a in sets.items()} == {"audio-en": "en", "audio-de": "de", "audio-en-ad": "en"}
    roles = {rid: [r.get("value") for r in a.iterfind("d:Role", NS)] for rid, a in sets.items()}
    assert roles == {"audio-en": ["main"], "audio-de": ["alternate"], "audio-en-ad": ["alternate", "description"]}
    labels = {rid: a.findtext("d:Label", namespaces=NS) for rid, a in sets.items()}
    assert labels["audio-de"] == "Deutsch" and len(set(labels.values())) == 3
    (acc,) = sets["audio-en-ad"].findall("d:Accessibility", NS)
    assert (acc.get("schemeIdUri"), acc.get("value")) == ("urn:tva:metadata:cs:AudioPurposeCS:2007", "1")
    assert not sets["audio-en"].findall("d:Accessibility", NS)
    assert len({a.get("id") for a in etree.fromstring(mpd).iterfind(".//d:AdaptationSet", NS)}) == 4


def test_dash_single_audio_stays_main():
    (only,) = audio_sets(make_view(infos=(V720, AUDIO))).values()
    assert [r.get("value") for r in only.iterfind("d:Role", NS)] == ["main"] and only.get("lang") == "en"
