// eftcloud operator dashboard: devices, registers and transactions, live over server-sent
// events (read with fetch so the admin token travels in a header, not in the URL). Plain
// JavaScript, no build step, no external resources.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'eftcloud.dashboard.token';
  const SVG = 'http://www.w3.org/2000/svg';
  const CATEGORIES = [
    { key: 'approved', label: 'Approved', color: '#15803d' },
    { key: 'declined', label: 'Declined', color: '#c2410c' },
    { key: 'cancelled', label: 'Cancelled', color: '#6b7280' },
    { key: 'failed', label: 'Failed', color: '#b91c1c' },
    { key: 'other', label: 'Other (non-financial)', color: '#7c3aed' },
    { key: 'pending', label: 'In progress', color: '#1d4ed8' },
  ];
  const COLORS = Object.fromEntries(CATEGORIES.map((c) => [c.key, c.color]));
  const LATENCY_BUCKETS = [
    { label: '<1s', max: 1000 }, { label: '1–2s', max: 2000 }, { label: '2–5s', max: 5000 },
    { label: '5–10s', max: 10000 }, { label: '10–30s', max: 30000 }, { label: '30–60s', max: 60000 },
    { label: '1–5m', max: 300000 }, { label: '>5m', max: Infinity },
  ];

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let data = { devices: [], transactions: [] };
  let stream = null; // AbortController of the live request
  let retryTimer = null;
  let selected = null;

  // ---- helpers -----------------------------------------------------------------------------------
  function category(t) {
    if (t.phase !== 'completed') return 'pending';
    switch (t.outcome) {
      case 'OK-ACCEPTED': return 'approved';
      case 'OK-DECLINED': return 'declined';
      case 'CANCELLED': return 'cancelled';
      case 'FAILED': case 'FAILED-INTERFACE': case 'OK-UNAVAILABLE': return 'failed';
      default: return 'other';
    }
  }
  function money(cents) {
    if (cents === undefined || cents === null) return '';
    return `$${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
  }
  function ago(iso) {
    if (!iso) return 'never';
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }
  function duration(ms) {
    if (ms === undefined || ms === null) return '';
    return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
  }
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v;
      else if (k === 'style') e.style.cssText = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function svg(tag, attrs = {}) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }
  function setLive(state, text) {
    document.body.dataset.live = state;
    $('live-status').textContent = text;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const err = new Error(body.error || `HTTP ${response.status}`);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  // ---- signing in and the live stream ------------------------------------------------------------
  async function signIn(t) {
    token = t;
    $('login-error').textContent = '';
    try {
      data.devices = await api('/admin/devices');
    } catch (e) {
      token = '';
      sessionStorage.removeItem(TOKEN_KEY);
      $('login-error').textContent = e.status === 401 ? 'Wrong admin token.' : e.message;
      showLogin();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login').hidden = true;
    $('board').hidden = false;
    $('sign-out').hidden = false;
    render();
    startLive();
  }

  function showLogin() {
    $('login').hidden = false;
    $('board').hidden = true;
    $('sign-out').hidden = true;
    setLive('off', 'Signed out');
  }

  async function startLive() {
    clearTimeout(retryTimer);
    if (stream) stream.abort();
    const controller = new AbortController();
    stream = controller;
    setLive('connecting', 'Connecting…');
    try {
      const response = await fetch('/admin/events', {
        headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 404) {
        const body = await response.json().catch(() => ({}));
        $('login-error').textContent = body.error || 'Signed out';
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setLive('on', 'Live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          dispatch(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
      throw new Error('stream ended');
    } catch (e) {
      if (controller.signal.aborted) return;
      setLive('error', 'Disconnected, retrying…');
      retryTimer = setTimeout(startLive, 2000);
    }
  }

  function dispatch(block) {
    let event = 'message';
    const lines = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue; // keep-alive comment
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') lines.push(value);
    }
    if (event === 'snapshot' && lines.length) {
      try {
        data = JSON.parse(lines.join('\n'));
        setLive('on', `Live · updated ${new Date().toLocaleTimeString()}`);
        render();
      } catch (_) { /* a malformed frame is skipped */ }
    } else if (event === 'problem') {
      setLive('error', lines.join(' ') || 'Problem on the cloud');
    }
  }

  // ---- rendering -------------------------------------------------------------------------------
  function render() {
    renderTiles();
    renderCharts();
    renderDevices();
    renderTransactions();
    if (selected) refreshTimeline(false);
  }

  function lastHour() {
    const since = Date.now() - 3600 * 1000;
    return data.transactions.filter((t) => Date.parse(t.createdAt) >= since);
  }

  function renderTiles() {
    const online = data.devices.filter((d) => d.online).length;
    $('tile-online').textContent = `${online} / ${data.devices.length}`;
    $('tile-busy').textContent = String(data.devices.filter((d) => d.busy).length);
    const hour = lastHour();
    $('tile-hour').textContent = String(hour.length);
    const financial = hour.filter((t) => t.phase === 'completed' && ['approved', 'declined', 'cancelled', 'failed'].includes(category(t)));
    const approved = financial.filter((t) => category(t) === 'approved').length;
    $('tile-approved').textContent = financial.length ? `${Math.round((approved / financial.length) * 100)} %` : '–';
    const times = hour.map((t) => t.durationMs).filter((x) => typeof x === 'number').sort((a, b) => a - b);
    $('tile-median').textContent = times.length ? duration(times[Math.floor(times.length / 2)]) : '–';
  }

  function renderCharts() {
    const hour = lastHour();
    $('legend').replaceChildren(...CATEGORIES.map((c) => el('li', { style: `--c:${c.color}` }, c.label)));

    // Transactions per minute, stacked by outcome, oldest on the left.
    const rate = $('chart-rate');
    rate.replaceChildren();
    const now = Date.now();
    const minutes = Array.from({ length: 60 }, () => Object.fromEntries(CATEGORIES.map((c) => [c.key, 0])));
    for (const t of hour) {
      const m = 59 - Math.min(59, Math.floor((now - Date.parse(t.createdAt)) / 60000));
      minutes[m][category(t)] += 1;
    }
    const peak = Math.max(1, ...minutes.map((m) => Object.values(m).reduce((a, b) => a + b, 0)));
    const W = 600; const H = 160; const left = 28; const bottom = 18; const top = 8;
    const bw = (W - left - 4) / 60;
    rate.append(svg('line', { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: '#9ca3af' }));
    const peakLabel = svg('text', { x: 2, y: top + 10 });
    peakLabel.textContent = String(peak);
    const zero = svg('text', { x: 14, y: H - bottom });
    zero.textContent = '0';
    const l60 = svg('text', { x: left, y: H - 4 });
    l60.textContent = '60 min ago';
    const lnow = svg('text', { x: W - 28, y: H - 4 });
    lnow.textContent = 'now';
    rate.append(peakLabel, zero, l60, lnow);
    minutes.forEach((m, i) => {
      let y = H - bottom;
      for (const c of CATEGORIES) {
        if (!m[c.key]) continue;
        const h = (m[c.key] / peak) * (H - bottom - top);
        y -= h;
        const r = svg('rect', { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: c.color });
        const title = svg('title');
        title.textContent = `${60 - i} min ago: ${m[c.key]} ${c.label.toLowerCase()}`;
        r.append(title);
        rate.append(r);
      }
    });
    $('chart-rate-desc').textContent = `${hour.length} transactions in the last hour, at most ${peak} in one minute.`;

    // Outcome mix.
    const counts = Object.fromEntries(CATEGORIES.map((c) => [c.key, 0]));
    for (const t of hour) counts[category(t)] += 1;
    const total = hour.length;
    $('chart-mix').replaceChildren(...CATEGORIES.filter((c) => counts[c.key]).map((c) =>
      el('span', { style: `width:${(counts[c.key] / total) * 100}%;background:${c.color}`, title: `${c.label}: ${counts[c.key]}` })));
    const mixText = CATEGORIES.filter((c) => counts[c.key]).map((c) => `${c.label} ${counts[c.key]} (${Math.round((counts[c.key] / total) * 100)} %)`).join(' · ');
    $('chart-mix-desc').textContent = total ? mixText : 'No transactions in the last hour.';

    // Time from request to outcome.
    const lat = $('chart-latency');
    lat.replaceChildren();
    const buckets = LATENCY_BUCKETS.map(() => 0);
    for (const t of hour) {
      if (typeof t.durationMs !== 'number') continue;
      buckets[LATENCY_BUCKETS.findIndex((b) => t.durationMs < b.max)] += 1;
    }
    const top2 = Math.max(1, ...buckets);
    const slot = (W - left) / buckets.length;
    lat.append(svg('line', { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: '#9ca3af' }));
    buckets.forEach((n, i) => {
      const h = (n / top2) * (H - bottom - top - 12);
      const r = svg('rect', { x: left + i * slot + 6, y: H - bottom - h, width: slot - 12, height: h, fill: '#1d4ed8' });
      const title = svg('title');
      title.textContent = `${LATENCY_BUCKETS[i].label}: ${n}`;
      r.append(title);
      const label = svg('text', { x: left + i * slot + slot / 2, y: H - 4, 'text-anchor': 'middle' });
      label.textContent = LATENCY_BUCKETS[i].label;
      lat.append(r, label);
      if (n) {
        const v = svg('text', { x: left + i * slot + slot / 2, y: H - bottom - h - 3, 'text-anchor': 'middle' });
        v.textContent = String(n);
        lat.append(v);
      }
    });
    $('chart-latency-desc').textContent = buckets.map((n, i) => `${LATENCY_BUCKETS[i].label}: ${n}`).join(', ');
  }

  function renderDevices() {
    $('devices-count').textContent = `(${data.devices.length})`;
    const rows = data.devices.map((d) => {
      const state = d.busy ? 'busy' : d.online ? 'online' : 'offline';
      const stateText = d.busy ? (d.online ? 'Online, busy' : 'Offline, busy') : d.online ? 'Online' : 'Offline';
      const regs = d.registers.length
        ? d.registers.map((r) => el('span', { class: 'reg' }, r.registerName || r.registerId,
          el('span', { class: 'reg-meta' }, ` ${r.businessName} · ${r.vendorName}${Object.keys(r.contact || {}).length ? ` · ${Object.values(r.contact).join(', ')}` : ''}`)))
        : ['none'];
      return el('tr', { 'data-device': d.deviceId },
        el('td', {}, el('span', { class: 'mono' }, d.deviceId), el('span', { class: 'reg-meta' }, ` ${d.vendor} ${d.model}`)),
        el('td', {}, el('span', { class: `state ${d.online ? 'online' : ''} ${d.busy ? 'busy' : ''}`, 'data-state': state }, stateText)),
        el('td', { title: d.lastSeen || '' }, ago(d.lastSeen)),
        el('td', {}, d.merchant),
        el('td', {}, ...regs));
    });
    $('devices').tBodies[0].replaceChildren(...rows);
  }

  function filters() {
    return {
      register: $('f-register').value.trim().toLowerCase(),
      device: $('f-device').value.trim().toLowerCase(),
      reference: $('f-reference').value.trim().toLowerCase(),
      outcome: $('f-outcome').value,
      since: $('f-since').value ? Date.parse(`${$('f-since').value}T00:00:00`) : null,
      until: $('f-until').value ? Date.parse(`${$('f-until').value}T00:00:00`) + 86400000 : null,
    };
  }

  function matches(t, f) {
    const created = Date.parse(t.createdAt);
    if (f.since !== null && created < f.since) return false;
    if (f.until !== null && created >= f.until) return false;
    if (f.register && !`${t.registerId} ${t.registerName}`.toLowerCase().includes(f.register)) return false;
    if (f.device && !t.deviceId.toLowerCase().includes(f.device)) return false;
    if (f.reference && !`${t.transactionId} ${t.posReference || ''}`.toLowerCase().includes(f.reference)) return false;
    if (f.outcome === 'pending') return t.phase !== 'completed';
    if (f.outcome && t.outcome !== f.outcome) return false;
    return true;
  }

  function renderTransactions() {
    const f = filters();
    const shown = data.transactions.filter((t) => matches(t, f));
    $('tx-count').textContent = `(${shown.length} of ${data.transactions.length})`;
    const rows = shown.map((t) => {
      const cat = category(t);
      const outcome = t.phase === 'completed' ? t.outcome : `${t.phase}${t.displayText ? `: ${t.displayText.split('\n').pop()}` : ''}`;
      const open = el('button', { type: 'button', class: 'link', title: 'Show the timeline' }, t.transactionId.slice(0, 8));
      open.addEventListener('click', () => showTimeline(t.transactionId));
      return el('tr', { 'data-transaction': t.transactionId, 'data-outcome': t.phase === 'completed' ? t.outcome : 'pending', class: selected === t.transactionId ? 'selected' : '' },
        el('td', { title: t.createdAt }, new Date(t.createdAt).toLocaleTimeString()),
        el('td', {}, open, t.posReference ? el('span', { class: 'reg-meta' }, ` ${t.posReference}`) : null),
        el('td', {}, t.registerName || t.registerId),
        el('td', { class: 'mono' }, t.deviceId),
        el('td', {}, t.function),
        el('td', { class: 'num' }, money(t.amountCents)),
        el('td', {}, el('span', { class: 'outcome', style: `--c:${COLORS[cat]}`, title: t.resultText || '' }, outcome)),
        el('td', { class: 'num' }, duration(t.durationMs)));
    });
    $('transactions').tBodies[0].replaceChildren(...rows);
  }

  async function showTimeline(id) {
    selected = id;
    $('timeline-panel').hidden = false;
    await refreshTimeline(true);
    renderTransactions();
  }

  async function refreshTimeline(focus) {
    const id = selected;
    try {
      const t = await api(`/admin/transactions/${encodeURIComponent(id)}`);
      if (selected !== id) return;
      $('timeline-title').textContent = `Timeline of ${t.transactionId}`;
      $('timeline-summary').textContent = `${t.function} ${money(t.amountCents)} from ${t.registerName || t.registerId} on ${t.deviceId}: ` +
        (t.phase === 'completed' ? `${t.outcome} ${t.resultText} (${t.completedBy})` : t.phase);
      $('timeline').replaceChildren(...t.events.map((e) => el('li', {},
        el('time', { dateTime: e.at }, new Date(e.at).toLocaleTimeString([], { hour12: false }) + `.${e.at.slice(20, 23)}`),
        el('span', { class: 'ev' }, e.event), e.detail)));
      if (focus) $('timeline-panel').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      $('timeline-summary').textContent = e.message;
      $('timeline').replaceChildren();
    }
  }

  // ---- events ----------------------------------------------------------------------------------
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signIn($('token').value.trim());
  });
  $('sign-out').addEventListener('click', () => {
    if (stream) stream.abort();
    clearTimeout(retryTimer);
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
  });
  $('filters').addEventListener('input', renderTransactions);
  $('filters').addEventListener('change', renderTransactions);
  $('filters').addEventListener('reset', () => setTimeout(renderTransactions, 0));
  $('filters').addEventListener('submit', (ev) => ev.preventDefault());
  // A full transaction id typed into the search opens its timeline, even one not listed.
  $('f-reference').addEventListener('change', () => {
    const v = $('f-reference').value.trim();
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v)) showTimeline(v.toLowerCase());
  });
  $('timeline-close').addEventListener('click', () => {
    selected = null;
    $('timeline-panel').hidden = true;
    renderTransactions();
  });
  setInterval(() => { if (!$('board').hidden) renderDevices(); }, 5000);

  if (token) signIn(token); else showLogin();
})();
