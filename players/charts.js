/*
 * charts.js - small live charts for the dashboard: inline SVG, no library, no build step (plain ES2020).
 *
 *   Charts.line(spec) -> a <figure class="chart"> holding one <svg>:
 *     spec = {
 *       key,                 // data-chart of the figure (tests and styles find it by that)
 *       title,               // shown above the chart with the newest value of the first series
 *       unit,                // 's' | 'bps' | '/s' | '' : how values are written
 *       t: [seconds],        // the bucket starts (the x axis: oldest on the left, now on the right)
 *       series: [{label, values: [number|null], bars?: true, dash?: true}],
 *       empty,               // the text shown when no series has a value
 *     }
 *   A null value breaks a line (nothing was measured then); bars are drawn from zero. The y axis runs from
 *   zero to a round number above the largest value.
 *
 * Exported on window.Charts.
 */
(function (global) {
  'use strict';

  const NS = 'http://www.w3.org/2000/svg';
  const W = 300;
  const H = 96;
  const LEFT = 40;      // room for the y labels
  const RIGHT = 6;
  const TOP = 6;
  const BOTTOM = 14;    // room for the time labels
  const COLORS = ['#4a7bd0', '#2f9e44', '#d98b1a', '#9c36b5', '#0c8599', '#e8590c', '#5c940d', '#c2255c'];
  const STALL = '#d6332f';

  function svgEl(tag, attrs) {
    const e = global.document.createElementNS(NS, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  function htmlEl(tag, cls, text) {
    const e = global.document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** The value as people read it: 1.2 s, 340 ms, 2.41 Mb/s, 830 kb/s, 3.5/s. */
  function format(v, unit) {
    if (v === null || v === undefined || !Number.isFinite(v)) return '–';
    if (unit === 's') return v < 1 ? Math.round(v * 1000) + ' ms' : v.toFixed(2) + ' s';
    if (unit === 'bps') {
      if (v >= 1e6) return (v / 1e6).toFixed(2) + ' Mb/s';
      return Math.round(v / 1e3) + ' kb/s';
    }
    if (unit === '/s') return (v < 10 ? v.toFixed(1) : Math.round(v)) + '/s';
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  /** The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for nothing). */
  function niceCeiling(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p * 1.0000001) return m * p;
    return 10 * p;
  }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && Number.isFinite(values[i])) return values[i];
    return null;
  }

  function runs(values) {
    // maximal runs of consecutive measured values: [[i, v], ...] each
    const out = [];
    let cur = [];
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        if (cur.length) out.push(cur);
        cur = [];
      } else {
        cur.push([i, v]);
      }
    });
    if (cur.length) out.push(cur);
    return out;
  }

  function axes(svg, top, unit, spanS) {
    const x0 = LEFT, x1 = W - RIGHT, y0 = TOP, y1 = H - BOTTOM;
    svg.appendChild(svgEl('line', { x1: x0, y1: y1, x2: x1, y2: y1, class: 'axis' }));
    svg.appendChild(svgEl('line', { x1: x0, y1: y0, x2: x1, y2: y0, class: 'grid' }));
    svg.appendChild(svgEl('line', { x1: x0, y1: (y0 + y1) / 2, x2: x1, y2: (y0 + y1) / 2, class: 'grid' }));
    const label = (x, y, text, anchor) => {
      const t = svgEl('text', { x, y, 'text-anchor': anchor, class: 'tick' });
      t.textContent = text;
      svg.appendChild(t);
    };
    label(x0 - 4, y0 + 8, format(top, unit), 'end');
    label(x0 - 4, y1, '0', 'end');
    label(x0, H - 2, '−' + Math.round(spanS / 60) + ' min', 'start');
    label(x1, H - 2, 'now', 'end');
  }

  function plot(svg, series, slots, top, index) {
    const x0 = LEFT, x1 = W - RIGHT, y0 = TOP, y1 = H - BOTTOM;
    const x = (i) => x0 + (slots > 1 ? (i * (x1 - x0)) / (slots - 1) : 0);
    const y = (v) => y1 - (Math.min(v, top) / top) * (y1 - y0);
    const color = series.bars ? STALL : COLORS[index % COLORS.length];
    const group = svgEl('g', { 'data-series': series.label, stroke: color, fill: color });
    let points = 0;
    if (series.bars) {
      const w = Math.max(1.5, (x1 - x0) / Math.max(1, slots) - 1);
      series.values.forEach((v, i) => {
        if (!(v > 0)) return;
        points++;
        group.appendChild(svgEl('rect', { x: x(i) - w / 2, y: y(v), width: w, height: y1 - y(v), class: 'bar' }));
      });
    } else {
      for (const run of runs(series.values)) {
        points += run.length;
        if (run.length === 1) {
          group.appendChild(svgEl('circle', { cx: x(run[0][0]), cy: y(run[0][1]), r: 1.8 }));
          continue;
        }
        const attrs = { points: run.map(([i, v]) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' '), fill: 'none' };
        if (series.dash) attrs['stroke-dasharray'] = '4 3';
        group.appendChild(svgEl('polyline', attrs));
      }
    }
    group.setAttribute('data-points', String(points));
    svg.appendChild(group);
    return { color, points };
  }

  /** One chart (see the header comment for `spec`). */
  function line(spec) {
    const fig = htmlEl('figure', 'chart');
    fig.dataset.chart = spec.key;
    const series = spec.series || [];
    const slots = (spec.t || []).length;
    const spanS = slots > 1 ? spec.t[slots - 1] - spec.t[0] : 0;
    let high = 0;
    for (const s of series) for (const v of s.values) if (v !== null && Number.isFinite(v) && v > high) high = v;
    const top = niceCeiling(high);
    const head = htmlEl('figcaption');
    head.appendChild(htmlEl('b', '', spec.title));
    const newest = series.length ? lastValue(series[0].values) : null;
    head.appendChild(global.document.createTextNode(' ' + format(newest, spec.unit)));
    fig.appendChild(head);
    const svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': spec.title });
    axes(svg, top, spec.unit, spanS);
    const legend = htmlEl('div', 'legend');
    let total = 0;
    series.forEach((s, i) => {
      const drawn = plot(svg, s, slots, top, i);
      total += drawn.points;
      const item = htmlEl('span', 'key');
      const swatch = htmlEl('i');
      swatch.style.background = drawn.color;
      item.appendChild(swatch);
      item.appendChild(global.document.createTextNode(s.label + ' ' + format(lastValue(s.values), spec.unit)));
      legend.appendChild(item);
    });
    svg.setAttribute('data-points', String(total));
    if (!total) {
      const t = svgEl('text', { x: (LEFT + W - RIGHT) / 2, y: H / 2, 'text-anchor': 'middle', class: 'none' });
      t.textContent = spec.empty || 'nothing measured yet';
      svg.appendChild(t);
    }
    fig.appendChild(svg);
    if (series.length > 1 || total) fig.appendChild(legend);
    return fig;
  }

  global.Charts = { line, format, niceCeiling };
})(window);
