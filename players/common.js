/*
 * common.js - shared by hls.html and dash.html (plain ES2020, no build step).
 *
 *  - loadLibrary(): /players/lib/<file> first, the same pinned version on jsDelivr if that fails
 *    (and a visible notice on the page saying so)
 *  - syncClock(): offset of the origin's clock (GET /time) against Date.now(), best-RTT sample
 *  - decodeTimecode() / readBandLuma() / captureTimeMs(): the pixel timecode the test source draws
 *  - startMonitor(): stats overlay, rendition and audio track pickers, window.__stats,
 *    window.__setLevel(i) and window.__setAudioTrack(i)
 *  - cmcdOptions(): how the player sends CMCD (CTA-5004) to the origin: ?cmcd=query|headers|off;
 *    encodeCmcd() / applyCmcd(): a CMCD payload, and a request decorated with it in place
 *
 * Everything is exported on window.LivePlayer; decodeTimecode is also a global for tests.
 */
(function (global) {
  'use strict';

  // Keep in step with package.json (the CDN fallback must be the version npm installed).
  const VERSIONS = { 'hls.js': '1.7.4', dashjs: '5.2.1' };
  const LIBS = {
    hls: {
      name: 'hls.js',
      version: VERSIONS['hls.js'],
      global: 'Hls',
      local: '/players/lib/hls.min.js',
      cdn: 'https://cdn.jsdelivr.net/npm/hls.js@' + VERSIONS['hls.js'] + '/dist/hls.min.js',
    },
    dash: {
      name: 'dash.js',
      version: VERSIONS.dashjs,
      global: 'dashjs',
      local: '/players/lib/dash.all.min.js',
      cdn: 'https://cdn.jsdelivr.net/npm/dashjs@' + VERSIONS.dashjs + '/dist/modern/umd/dash.all.min.js',
    },
  };

  const TWO32 = 4294967296;          // 2^32
  const BLOCKS = 40;                 // blocks across the timecode band
  const TICK_MS = 250;               // stats / timecode sampling period
  // Gap jumping: a failover to a redundant encoder can leave a hole of up to one segment in the buffer
  // (listed EXT-X-GAP / a DASH timeline hole). hls.js 1.7 does not always step over a hole that starts
  // inside a partly loaded segment, and dash.js waits seconds before it does: stalled this long at the end
  // of a buffered range, with the next range at most GAP_JUMP_MAX_S ahead, the page seeks to it.
  const GAP_STALL_MS = 300;
  const GAP_JUMP_MAX_S = 3.0;
  // One interruption is one stall: a 'waiting' less than STALL_MERGE_MS after playback resumed (the seek
  // that steps over a hole, a player's nudge past a decode gap) continues the stall before it. stallTime
  // still counts every moment spent waiting.
  const STALL_MERGE_MS = 1000;
  // Nudging: stalled this long with at least NUDGE_AHEAD_S buffered right at the playhead, the page seeks
  // NUDGE_S forward, which restarts the media pipeline. Chrome, run dry exactly where media from another
  // encoder begins (a failover that filled the dead one's segment), can hold that media for seconds before
  // it plays it; hls.js nudges the same way, but only after more than a second.
  const NUDGE_STALL_MS = 300;
  const NUDGE_AHEAD_S = 0.2;
  const NUDGE_S = 0.01;
  const MAX_SAMPLES = 600;           // glassSamples / latencySamples length
  const MAX_ERRORS = 200;

  // ---------------------------------------------------------------- pixel timecode

  /**
   * Decode the 40 block luminances (0..255) of one frame's timecode band.
   * Returns the 32-bit value (capture ms mod 2^32, 0..2^32-1) or null if the markers
   * or the checksum do not match. Pure: no DOM, no clock.
   */
  function decodeTimecode(lum) {
    if (!lum || lum.length !== BLOCKS) return null;
    const bits = new Array(BLOCKS);
    for (let i = 0; i < BLOCKS; i++) {
      const v = Number(lum[i]);
      if (!Number.isFinite(v)) return null;
      bits[i] = v >= 128 ? 1 : 0;
    }
    if (bits[0] !== 1 || bits[39] !== 1 || bits[1] !== 0 || bits[38] !== 0) return null;
    let value = 0;
    let nibbleSum = 0;
    for (let n = 0; n < 8; n++) {
      let nibble = 0;
      for (let b = 0; b < 4; b++) nibble = nibble * 2 + bits[2 + n * 4 + b];
      value = value * 16 + nibble;   // arithmetic, not bitwise: stays an exact unsigned integer
      nibbleSum += nibble;
    }
    const check = bits[34] * 8 + bits[35] * 4 + bits[36] * 2 + bits[37];
    return nibbleSum % 16 === check ? value : null;
  }

  /** Non-negative modulo in floating point (exact for integers below 2^53). */
  function mod(a, n) {
    const r = a % n;
    return r < 0 ? r + n : r;
  }

  /**
   * Full epoch ms of a decoded 32-bit timecode, given "now" in epoch ms (server clock).
   * capture = now - ((now - value) mod 2^32). A capture up to 2^31 ms (~24.8 days) in the
   * "future" (clock error of a few ms) is kept as a small negative age instead of wrapping
   * to ~49.7 days.
   */
  function captureTimeMs(value, nowMs) {
    let age = mod(nowMs - value, TWO32);
    if (age > TWO32 / 2) age -= TWO32;
    return nowMs - age;
  }

  /**
   * Draw the top band of `source` (video, canvas or image of srcW x srcH) into `canvas`
   * (scaled to at most maxWidth wide, aspect kept) and return the 40 block luminances:
   * rows 35%..65% of the band, the middle half of each block, 0.299R+0.587G+0.114B.
   */
  function readBandLuma(source, srcW, srcH, canvas, maxWidth) {
    if (!(srcW > 0 && srcH > 0)) return null;
    const band = Math.max(1, Math.round(srcH / 12));
    const cw = Math.max(BLOCKS, Math.min(srcW, maxWidth || 640));
    const ch = Math.max(1, Math.round((band * cw) / srcW));
    if (canvas.width !== cw) canvas.width = cw;
    if (canvas.height !== ch) canvas.height = ch;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(source, 0, 0, srcW, band, 0, 0, cw, ch);
    const px = ctx.getImageData(0, 0, cw, ch).data;
    const y0 = Math.floor(ch * 0.35);
    const y1 = Math.max(y0 + 1, Math.ceil(ch * 0.65));
    const out = new Array(BLOCKS);
    for (let i = 0; i < BLOCKS; i++) {
      const x0 = Math.floor((i * cw) / BLOCKS);
      const x1 = Math.floor(((i + 1) * cw) / BLOCKS);
      const quarter = Math.floor((x1 - x0) / 4);
      const a = x0 + quarter;
      const b = Math.max(a + 1, x1 - quarter);
      let sum = 0;
      let count = 0;
      for (let y = y0; y < y1; y++) {
        let o = (y * cw + a) * 4;
        for (let x = a; x < b; x++, o += 4) {
          sum += 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2];
          count++;
        }
      }
      out[i] = count ? sum / count : 0;
    }
    return out;
  }

  // ---------------------------------------------------------------- clock sync

  /** Epoch ms (with sub-ms fraction) of an ISO 8601 UTC string like 2026-11-27T18:00:00.123Z. */
  function parseIsoMs(text) {
    const s = String(text).trim().replace(/^"|"$/g, '');
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})$/.exec(s);
    if (!m) {
      const t = Date.parse(s);
      return Number.isFinite(t) ? t : NaN;
    }
    let ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    if (m[7]) ms += Number('0.' + m[7]) * 1000;
    if (m[8] !== 'Z') {
      const sign = m[8][0] === '-' ? -1 : 1;
      const hh = +m[8].slice(1, 3);
      const mm = +m[8].slice(-2);
      ms -= sign * (hh * 60 + mm) * 60000;
    }
    return ms;
  }

  /**
   * Fetch `url` (default /time) `samples` times; offset = serverTime - (t0 + t1) / 2 from the
   * sample with the lowest round trip. Resolves {offset, rtt, samples} or null if all failed.
   */
  async function syncClock(url, samples) {
    url = url || '/time';
    samples = samples || 5;
    let best = null;
    let ok = 0;
    for (let i = 0; i < samples; i++) {
      try {
        const t0 = Date.now();
        const p0 = performance.now();
        const resp = await fetch(url, { cache: 'no-store' });
        const text = await resp.text();
        const p1 = performance.now();
        if (!resp.ok) continue;
        const server = parseIsoMs(text);
        if (!Number.isFinite(server)) continue;
        const rtt = p1 - p0;
        // the server truncates to whole ms: +0.5 ms removes that bias when it sends 3 digits
        const offset = server + 0.5 - (t0 + rtt / 2);
        ok++;
        if (!best || rtt < best.rtt) best = { offset, rtt };
      } catch (e) {
        /* unreachable /time: try the next sample */
      }
    }
    return best ? { offset: best.offset, rtt: best.rtt, samples: ok } : null;
  }

  // ---------------------------------------------------------------- script loading

  function loadScript(url) {
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = url;
      s.async = false;
      s.onload = () => resolve(url);
      s.onerror = () => {
        s.remove();
        reject(new Error('failed to load ' + url));
      };
      document.head.appendChild(s);
    });
  }

  /** A banner at the bottom of the page (``.library-notice``); the same text is shown once. */
  function showNotice(text) {
    const doc = global.document;
    if (!doc || !doc.body) return;
    for (const el of doc.querySelectorAll('.library-notice')) if (el.textContent === text) return;
    const box = doc.createElement('div');
    box.className = 'library-notice';
    box.setAttribute('role', 'status');
    box.textContent = text;
    doc.body.appendChild(box);
  }

  /** Load 'hls' or 'dash': local copy, then jsDelivr (with a notice on the page). Resolves 'local' or 'cdn'. */
  async function loadLibrary(which) {
    const lib = LIBS[which];
    if (global[lib.global]) return 'preloaded';
    try {
      await loadScript(lib.local);
      if (global[lib.global]) return 'local';
    } catch (e) {
      /* fall through to the CDN */
    }
    console.warn('[players] ' + lib.local + ' unavailable, loading ' + lib.cdn);
    // said on the page, not only in the console: the viewer's browser now depends on a third party
    showNotice(lib.name + ' ' + lib.version + ' is not installed on this server: loading it from the public CDN (' +
      new URL(lib.cdn).host + '). Build with scripts/build (after scripts/setup) to serve it locally.');
    await loadScript(lib.cdn);
    if (!global[lib.global]) throw new Error(lib.cdn + ' loaded but defines no ' + lib.global);
    return 'cdn';
  }

  // ---------------------------------------------------------------- stats + overlay

  const params = new URLSearchParams(global.location ? global.location.search : '');

  // ---------------------------------------------------------------- CMCD

  /**
   * How the page's player reports CMCD (CTA-5004: buffer length, throughput, bitrate, startup, stalls)
   * with its requests. ?cmcd=query (the default): one CMCD= query argument, which needs no CORS preflight
   * and which a CDN's cache key can leave out; ?cmcd=headers: the CMCD-* headers (on another origin each
   * new URL costs a preflight); ?cmcd=off: none. The content id is the stream name in `src`.
   * Returns {mode: 'query' | 'headers' | null, contentId: string | null}.
   */
  function cmcdOptions(src) {
    const wanted = params.get('cmcd') || 'query';
    const m = /\/live\/([A-Za-z0-9][A-Za-z0-9_-]{0,63})\//.exec(String(src || ''));
    return {
      mode: wanted === 'query' || wanted === 'headers' ? wanted : null,
      contentId: m ? m[1] : null,
    };
  }

  // CTA-5004 5.2: which header carries each key (the others go in CMCD-Request)
  const CMCD_HEADER_OF = {
    br: 'CMCD-Object', d: 'CMCD-Object', ot: 'CMCD-Object', tb: 'CMCD-Object',
    bs: 'CMCD-Status', rtp: 'CMCD-Status',
    cid: 'CMCD-Session', pr: 'CMCD-Session', sf: 'CMCD-Session', sid: 'CMCD-Session', st: 'CMCD-Session', v: 'CMCD-Session',
  };
  const CMCD_TOKENS = new Set(['ot', 'sf', 'st']);

  /** The CTA-5004 payload of `data`: keys sorted, true as a bare key, tokens bare, strings quoted. */
  function encodeCmcd(data) {
    const members = [];
    for (const key of Object.keys(data).sort()) {
      const v = data[key];
      if (v === undefined || v === null || v === false || (typeof v === 'number' && !Number.isFinite(v))) continue;
      if (v === true) members.push(key);
      else if (typeof v === 'number' || CMCD_TOKENS.has(key)) members.push(key + '=' + v);
      else members.push(key + '="' + String(v).replace(/["\\]/g, '\\$&') + '"');
    }
    return members.join(',');
  }

  /** Add `data` to `request` ({url, headers}) in place: the CMCD= query argument or the CMCD-* headers. */
  function applyCmcd(request, data, mode) {
    if (mode === 'headers') {
      const groups = {};
      for (const key of Object.keys(data)) {
        const header = CMCD_HEADER_OF[key] || 'CMCD-Request';
        (groups[header] = groups[header] || {})[key] = data[key];
      }
      request.headers = request.headers || {};
      for (const header of Object.keys(groups)) {
        const value = encodeCmcd(groups[header]);
        if (value) request.headers[header] = value;
      }
    } else if (mode === 'query') {
      const url = new URL(request.url, global.location.href);
      const value = encodeCmcd(data);
      if (value) url.searchParams.set('CMCD', value);
      request.url = url.href;
    }
    return request;
  }

  function numOrNull(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  function fmt(v, digits, unit) {
    return v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits) + (unit || '');
  }

  function levelLabel(l) {
    const h = l.height ? l.height + 'p' : 'level ' + l.index;
    const br = l.bitrate ? ' ' + (l.bitrate / 1e6).toFixed(2) + ' Mb/s' : '';
    return h + br;
  }

  function audioLabel(t) {
    return (t.name || 'track ' + t.index) + (t.lang ? ' (' + t.lang + ')' : '') + (t.describesVideo ? ' [AD]' : '');
  }

  function bufferAhead(video) {
    const t = video.currentTime;
    const b = video.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && t <= b.end(i)) return Math.max(0, b.end(i) - t);
    }
    return 0;
  }

  /** Where the next buffered range starts when the playhead is stuck at the end of one (else null). */
  function holeEnd(video) {
    const t = video.currentTime;
    const b = video.buffered;
    for (let i = 0; i + 1 < b.length; i++) {
      if (b.start(i) <= t + 0.1 && t <= b.end(i) + 0.1 && b.end(i) - t < 0.25) {
        const next = b.start(i + 1);
        return next > t && next - t <= GAP_JUMP_MAX_S ? next : null;
      }
    }
    return null;
  }

  function pushCapped(arr, v) {
    arr.push(v);
    if (arr.length > MAX_SAMPLES) arr.splice(0, arr.length - MAX_SAMPLES);
  }

  function stat(arr) {
    if (!arr.length) return null;
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (const v of arr) {
      if (v < min) min = v;
      if (v > max) max = v;
      sum += v;
    }
    return { min, max, avg: sum / arr.length };
  }

  /**
   * Start the monitor on `video` for player 'hls' | 'dash'. Returns
   * {setAdapter(adapter), error(msg), fatal(msg, recovering), stats}.
   *
   * adapter: {
   *   version, latency() -> s|null, levels() -> [{index,height,width,bitrate}],
   *   level() -> index|-1, auto() -> bool, setLevel(i), lowLatency() -> bool,
   *   partTarget() -> s|null, targetLatency() -> s|null,
   *   onVideoError(mediaError) -> true if the player itself recovers from a video element error,
   *   audioTracks() -> [{index, name, lang, default, describesVideo}], audioTrack() -> index|-1,
   *   setAudioTrack(i)   (the three audio ones optional)
   * }
   */
  function startMonitor(video, player) {
    const stats = {
      player,
      ready: false,
      currentTime: 0,
      liveLatency: null,
      targetLatency: null,
      glassToGlass: null,
      glassSamples: [],
      latencySamples: [],
      level: -1,
      levels: [],
      auto: true,
      audioTracks: [],        // [{index, name, lang, default, describesVideo}] as the player lists them
      audioTrack: -1,         // index of the track the player has selected
      requestedLevel: -1,
      buffer: 0,
      stalls: 0,
      stallTime: 0,
      stallLog: [],
      gapJumps: 0,
      nudges: 0,
      droppedFrames: 0,
      totalFrames: 0,
      errors: [],
      fatal: false,
      lowLatency: false,
      partTarget: null,
      playbackRate: 1,
      videoWidth: 0,
      videoHeight: 0,
      clockOffset: 0,
      clockRtt: null,
      clockSynced: false,
      timecodeFrames: 0,
      timecodeRejects: 0,
      library: null,          // 'local' | 'cdn'
      version: null,
      src: null,
    };
    global.__stats = stats;

    let adapter = null;
    let pendingLevel = null;
    let stalledSince = null;
    let resumedAt = -Infinity;
    let canvas = null;
    let timecodeBroken = false;
    let levelsKey = '';

    let lastError = '';
    function error(msg) {
      msg = String(msg);
      if (msg === lastError) return;   // one line per burst of the same error
      lastError = msg;
      stats.errors.push(msg);
      if (stats.errors.length > MAX_ERRORS) stats.errors.splice(0, stats.errors.length - MAX_ERRORS);
      console.warn('[players]', msg);
    }
    /** A fatal player error; `recovering` = the page is attempting a recovery (fatal stays false). */
    function fatal(msg, recovering) {
      error('FATAL: ' + msg + (recovering ? ' (recovering)' : ''));
      if (!recovering) stats.fatal = true;
    }

    global.__setLevel = function (i) {
      i = Number(i);
      if (!Number.isInteger(i) || i < -1) return false;
      stats.requestedLevel = i;
      if (!adapter) {
        pendingLevel = i;
        return true;
      }
      if (i >= 0 && i >= adapter.levels().length) return false;
      adapter.setLevel(i);
      return true;
    };

    global.__setAudioTrack = function (i) {
      i = Number(i);
      if (!adapter || !adapter.setAudioTrack || !Number.isInteger(i) || i < 0) return false;
      if (i >= adapter.audioTracks().length) return false;
      adapter.setAudioTrack(i);
      return true;
    };

    // ---- video element events
    video.addEventListener('playing', () => {
      stats.ready = true;
      if (stalledSince !== null) {
        const now = performance.now();
        const waited = (now - stalledSince) / 1000;
        stats.stallTime += waited;
        const last = stats.stallLog[stats.stallLog.length - 1];
        if (last) last.s = +(last.s + waited).toFixed(3);
        stalledSince = null;
        resumedAt = now;
      }
    });
    video.addEventListener('waiting', () => {
      if (!stats.ready || stalledSince !== null) return;
      stalledSince = performance.now();
      // the same interruption: playback resumed less than a second ago, or has not yet moved a second of
      // media past the previous stall (a player's seek back over a hole stalls again at nearly the same spot)
      const last = stats.stallLog[stats.stallLog.length - 1];
      if (last && (stalledSince - resumedAt < STALL_MERGE_MS || video.currentTime - last.at < STALL_MERGE_MS / 1000)) return;
      stats.stalls++;
      pushCapped(stats.stallLog, { at: +video.currentTime.toFixed(3), s: 0 });
    });
    video.addEventListener('error', () => {
      const e = video.error;
      const msg = 'video element error ' + (e ? e.code + ' ' + (e.message || '') : '');
      // hls.js resets the MediaSource itself and reports a fatal ERROR if it gives up
      if (adapter && adapter.onVideoError && adapter.onVideoError(e)) error(msg + ' (the player recovers)');
      else fatal(msg, false);
    });

    // ---- clock
    const timeUrl = params.get('time') || '/time';
    function resync() {
      syncClock(timeUrl, 5).then((r) => {
        if (r) {
          stats.clockOffset = r.offset;
          stats.clockRtt = r.rtt;
          stats.clockSynced = true;
        } else if (!stats.clockSynced) {
          error('clock sync: ' + timeUrl + ' unreachable, using the local clock');
        }
      });
    }
    resync();
    setInterval(resync, 60000);

    // ---- overlay
    const box = document.createElement('div');
    box.id = 'stats';
    box.className = 'stats-overlay';
    const pre = document.createElement('pre');
    const label = document.createElement('label');
    label.textContent = 'rendition ';
    const select = document.createElement('select');
    select.id = 'level-select';
    select.addEventListener('change', () => global.__setLevel(Number(select.value)));
    label.appendChild(select);
    const audioLabelEl = document.createElement('label');
    audioLabelEl.textContent = ' audio ';
    const audioSelect = document.createElement('select');
    audioSelect.id = 'audio-select';
    audioSelect.addEventListener('change', () => global.__setAudioTrack(Number(audioSelect.value)));
    audioLabelEl.appendChild(audioSelect);
    box.appendChild(pre);
    box.appendChild(label);
    box.appendChild(audioLabelEl);
    document.body.appendChild(box);
    let audioKey = '';

    function rebuildAudioSelect() {
      const key = JSON.stringify(stats.audioTracks);
      audioLabelEl.hidden = stats.audioTracks.length < 2;
      if (key !== audioKey) {
        audioKey = key;
        audioSelect.textContent = '';
        for (const t of stats.audioTracks) {
          const o = document.createElement('option');
          o.value = String(t.index);
          o.textContent = audioLabel(t);
          audioSelect.appendChild(o);
        }
      }
      const want = String(stats.audioTrack);
      if (document.activeElement !== audioSelect && audioSelect.value !== want) audioSelect.value = want;
    }

    function rebuildSelect() {
      const key = JSON.stringify(stats.levels);
      if (key === levelsKey) return;
      levelsKey = key;
      select.textContent = '';
      const auto = document.createElement('option');
      auto.value = '-1';
      auto.textContent = 'Auto';
      select.appendChild(auto);
      for (const l of stats.levels) {
        const o = document.createElement('option');
        o.value = String(l.index);
        o.textContent = levelLabel(l);
        select.appendChild(o);
      }
    }

    function decodeFrame() {
      if (timecodeBroken || video.readyState < 2 || !video.videoWidth) return;
      canvas = canvas || document.createElement('canvas');
      let lum;
      try {
        lum = readBandLuma(video, video.videoWidth, video.videoHeight, canvas, 640);
      } catch (e) {
        timecodeBroken = true;   // e.g. a tainted canvas (cross-origin media without CORS)
        error('timecode: cannot read video pixels: ' + e.message);
        return;
      }
      const value = decodeTimecode(lum);
      if (value === null) {
        stats.timecodeRejects++;
        return;
      }
      const now = Date.now() + stats.clockOffset;
      const g2g = (now - captureTimeMs(value, now)) / 1000;
      stats.timecodeFrames++;
      stats.glassToGlass = g2g;
      pushCapped(stats.glassSamples, g2g);
    }

    function jumpGap() {
      if (stalledSince === null || video.paused || video.seeking) return;
      if (performance.now() - stalledSince < GAP_STALL_MS) return;
      const next = holeEnd(video);
      if (next === null) return;
      stats.gapJumps++;
      error('stepped over a ' + (next - video.currentTime).toFixed(2) + ' s hole in the buffer');
      video.currentTime = next + 0.05;
    }

    let nudgedAt = -Infinity;
    const nudging = params.get('nudge') !== '0'; // ?nudge=0: leave a stuck playhead to the player and browser
    function nudge() {
      if (!nudging || stalledSince === null || video.paused || video.seeking) return;
      const now = performance.now();
      if (now - stalledSince < NUDGE_STALL_MS || now - nudgedAt < NUDGE_STALL_MS) return;
      if (bufferAhead(video) < NUDGE_AHEAD_S) return;
      nudgedAt = now;
      stats.nudges++;
      video.currentTime += NUDGE_S;
    }

    // Captions and subtitles as the browser holds them: each text track with its newest cues (a
    // disabled track keeps none)
    function textTracks() {
      return Array.from(video.textTracks).map((t) => {
        const cues = Array.from(t.cues || []).slice(-20);
        return {
          kind: t.kind, label: t.label, language: t.language, mode: t.mode,
          cues: cues.map((c) => ({ start: c.startTime, end: c.endTime, text: c.text })),
        };
      });
    }

    function tick() {
      jumpGap();
      nudge();
      stats.textTracks = textTracks();
      stats.currentTime = video.currentTime;
      stats.buffer = bufferAhead(video);
      stats.videoWidth = video.videoWidth;
      stats.videoHeight = video.videoHeight;
      stats.playbackRate = video.playbackRate;
      if (video.getVideoPlaybackQuality) {
        const q = video.getVideoPlaybackQuality();
        stats.droppedFrames = q.droppedVideoFrames;
        stats.totalFrames = q.totalVideoFrames;
      }
      if (adapter) {
        try {
          stats.levels = adapter.levels();
          stats.level = adapter.level();
          stats.auto = adapter.auto();
          stats.lowLatency = !!adapter.lowLatency();
          stats.partTarget = numOrNull(adapter.partTarget());
          stats.targetLatency = numOrNull(adapter.targetLatency());
          if (adapter.audioTracks) {
            stats.audioTracks = adapter.audioTracks();
            stats.audioTrack = adapter.audioTrack();
          }
          const lat = stats.ready ? numOrNull(adapter.latency()) : null;
          stats.liveLatency = lat;
          if (lat !== null) pushCapped(stats.latencySamples, lat);
          if (pendingLevel !== null && stats.levels.length) {
            const p = pendingLevel;
            pendingLevel = null;
            global.__setLevel(p);
          }
        } catch (e) {
          error('stats: ' + e.message);
        }
      }
      if (stats.ready) decodeFrame();
      render();
    }

    function render() {
      rebuildSelect();
      rebuildAudioSelect();
      const audio = stats.audioTracks.find((t) => t.index === stats.audioTrack);
      const want = stats.auto ? '-1' : String(stats.requestedLevel >= 0 ? stats.requestedLevel : stats.level);
      if (document.activeElement !== select && select.value !== want) select.value = want;
      const cur = stats.levels.find((l) => l.index === stats.level);
      const g = stat(stats.glassSamples.slice(-120));
      const lines = [
        (stats.player === 'hls' ? 'hls.js ' : 'dash.js ') + (stats.version || '') +
          (stats.library ? ' (' + stats.library + ')' : '') +
          '  LL ' + (stats.lowLatency ? 'on' : 'off') +
          (stats.partTarget ? ' part ' + fmt(stats.partTarget, 3, ' s') : ''),
        'latency   ' + fmt(stats.liveLatency, 2, ' s') +
          (stats.targetLatency !== null ? '  target ' + fmt(stats.targetLatency, 2, ' s') : '') +
          '  rate ' + fmt(stats.playbackRate, 2),
        'glass     ' + fmt(stats.glassToGlass, 2, ' s') +
          (g ? '  30s min/avg/max ' + fmt(g.min, 2) + '/' + fmt(g.avg, 2) + '/' + fmt(g.max, 2) : ''),
        'rendition ' + (cur ? levelLabel(cur) : stats.videoHeight ? stats.videoHeight + 'p' : '-') +
          (stats.auto ? ' [auto]' : ' [manual]') +
          (stats.videoWidth ? '  decoded ' + stats.videoWidth + 'x' + stats.videoHeight : ''),
        'audio     ' + (audio ? audioLabel(audio) : '-') +
          (stats.audioTracks.length > 1 ? '  of ' + stats.audioTracks.length : ''),
        'buffer    ' + fmt(stats.buffer, 2, ' s'),
        'stalls    ' + stats.stalls + (stats.stallTime ? ' (' + stats.stallTime.toFixed(1) + ' s)' : '') +
          (stats.gapJumps ? '  holes stepped over ' + stats.gapJumps : '') +
          (stats.nudges ? '  nudged ' + stats.nudges : ''),
        'dropped   ' + stats.droppedFrames + ' / ' + stats.totalFrames + ' frames',
        'clock     ' + (stats.clockSynced
          ? 'offset ' + (stats.clockOffset >= 0 ? '+' : '') + stats.clockOffset.toFixed(1) + ' ms rtt ' +
            fmt(stats.clockRtt, 1, ' ms')
          : 'local (no /time)'),
      ];
      if (stats.errors.length) lines.push('error     ' + stats.errors[stats.errors.length - 1].slice(0, 80));
      pre.textContent = lines.join('\n');
      box.classList.toggle('fatal', stats.fatal);
    }

    setInterval(tick, TICK_MS);

    return {
      stats,
      error,
      fatal,
      setAdapter(a) {
        adapter = a;
        stats.version = a.version || null;
      },
    };
  }

  /** Muted, inline autoplay (allowed without a user gesture). */
  function prepareVideo(video) {
    video.muted = true;
    video.defaultMuted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute('muted', '');
    video.setAttribute('playsinline', '');
  }

  function tryPlay(video) {
    const p = video.play();
    if (p && p.catch) p.catch(() => { /* autoplay retried on canplay */ });
  }

  global.LivePlayer = {
    VERSIONS,
    LIBS,
    params,
    decodeTimecode,
    captureTimeMs,
    readBandLuma,
    parseIsoMs,
    syncClock,
    loadLibrary,
    showNotice,
    startMonitor,
    cmcdOptions,
    encodeCmcd,
    applyCmcd,
    prepareVideo,
    tryPlay,
    levelLabel,
    bufferAhead,
  };
  global.decodeTimecode = decodeTimecode;
})(window);
