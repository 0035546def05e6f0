// eftcloud operator dashboard: devices, registers and transactions, live over server-sent
// events (read with fetch, so a token travels in a header, not in the URL); a device's health
// history and effective configuration; configuration profiles at each level; software update
// campaigns (the operator's); webhook endpoints and their deliveries; API keys, the audit log and the people of the installation. Signed in with an email and password (a
// session cookie the page cannot read, plus a CSRF token it sends with every change), or with
// an admin token or API key. Plain JavaScript, no build step, no external resources.
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
  const SCOPES = [
    { scope: 'pos:transact', label: 'pos:transact: run transactions', pos: true },
    { scope: 'pos:read', label: 'pos:read: read transactions and status', pos: true },
    { scope: 'pos:refund', label: 'pos:refund: refunds', pos: true },
    { scope: 'devices:manage', label: 'devices:manage: see, rotate, revoke devices', pos: false },
    { scope: 'reports:read', label: 'reports:read: the dashboard, read only', pos: false },
    { scope: 'webhooks:manage', label: 'webhooks:manage: webhook endpoints', pos: true },
    { scope: 'admin', label: 'admin: everything, keys and audit included', pos: false },
  ];
  const FOLLOW_UP_STATES = { in_flight: 'in flight', approved: 'approved', not_approved: 'not approved' };
  const ORDER_STATES = { open: 'open', paid: 'paid', cancelled: 'cancelled' };
  // Follow-ups of the whole original: no amount of their own.
  const WHOLE = new Set(['Card.Void', 'Card.Release']);
  const AUDIT_PAGE = 50;
  // How long an armed "Confirm …" button waits for its second click.
  const CONFIRM_MS = 5000;

  // Who is signed in: null, { kind: 'session', email, role, merchantId, csrf } or
  // { kind: 'token', token }. `can` is what the page offers them (the server decides anyway).
  let auth = null;
  let can = { manage: false, admin: false, allMerchants: false, operator: false };
  let merchants = []; // [{ merchantId, name }] when the credential may list them
  let merchantFilter = '';
  let data = { devices: [], transactions: [] };
  let stream = null; // AbortController of the live request
  let retryTimer = null;
  let selected = null;
  let armed = null; // { key, until }: a button waiting for its confirming click
  let apiKeys = [];
  let auditBefore = null; // the page of entries older than this sequence number; null: the newest
  let deviceShown = null; // the device whose detail is open
  let deviceLoads = 0; // each read of a detail counts, so an older answer arriving late is dropped
  let configTarget = null; // { level, id, label }: the profile the configuration view shows
  let configProfile = {}; // that profile as stored (Undo returns to it)
  let configLoads = 0;
  let webhookShown = null; // the endpoint whose deliveries are open
  let campaign = null; // the campaign whose detail is open
  let campaignLoads = 0;
  let artifactList = [];

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
  // Minor units (a number, or a string as payments give them) in their currency, as terminals
  // and their receipts show them: JPY 1234, AUD 12.34, KWD 1.234.
  function money(minor, currency, digits) {
    if (minor === undefined || minor === null || minor === '') return '';
    const m = Number(minor);
    if (!digits) return `${currency} ${m}`;
    const scale = 10 ** digits;
    return `${currency} ${Math.floor(m / scale)}.${String(m % scale).padStart(digits, '0')}`;
  }
  // UUIDv7 ids begin with the time, the same for every transaction of a minute: the tail is
  // what tells them apart; the whole id is in the title and the timeline.
  function shortId(id) { return `…${id.slice(-12)}`; }
  function ago(iso) {
    if (!iso) return 'never';
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }
  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : '';
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
      else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
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
  function merchantName(id) {
    const m = merchants.find((x) => x.merchantId === id);
    return m ? m.name : id;
  }
  // `merchant:<id>` as the merchant's name; other owners as they are.
  function ownerText(owner) {
    return owner.startsWith('merchant:') ? `merchant ${merchantName(owner.slice(9))}` : owner;
  }

  // The headers of a request as whoever is signed in: the token, or (for a change made with
  // the session cookie, which the browser sends by itself) the CSRF token.
  function headers(method) {
    const h = {};
    if (auth && auth.kind === 'token') h.Authorization = `Bearer ${auth.token}`;
    if (auth && auth.kind === 'session' && method !== 'GET') h['X-CSRF-Token'] = auth.csrf;
    return h;
  }

  async function api(path, { method = 'GET', body } = {}) {
    const h = headers(method);
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
    if (response.status === 204) return null;
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const err = new Error(answer.error || `HTTP ${response.status}`);
      err.status = response.status;
      if (response.status === 401 && auth && auth.kind === 'session') sessionEnded();
      throw err;
    }
    return answer;
  }

  // ---- signing in and out ----------------------------------------------------------------------
  function showLogin(message) {
    stopLive();
    auth = null;
    document.body.dataset.auth = 'none';
    document.body.dataset.role = '';
    $('login').hidden = false;
    $('board').hidden = true;
    $('sign-out').hidden = true;
    $('whoami').hidden = true;
    if (message !== undefined) $('login-error').textContent = message;
    setLive('off', 'Signed out');
  }

  function sessionEnded() {
    showLogin('Your session has ended; sign in again.');
  }

  function stopLive() {
    clearTimeout(retryTimer);
    if (stream) stream.abort();
    stream = null;
  }

  // Opens the board for `a`: checks the credential reads the devices, learns what it may do.
  async function enter(a) {
    stopLive();
    auth = a;
    $('login-error').textContent = '';
    try {
      data = { devices: await api('/admin/devices'), transactions: [] };
    } catch (e) {
      const wasToken = a.kind === 'token';
      if (wasToken) sessionStorage.removeItem(TOKEN_KEY);
      showLogin(wasToken && e.status === 401 ? 'Wrong admin token or API key.' : e.message);
      return;
    }
    merchants = [];
    if (a.kind === 'session') {
      can = {
        manage: a.role !== 'viewer',
        admin: a.role !== 'viewer',
        allMerchants: a.role === 'owner' || a.role === 'operator',
      };
    } else {
      can = { manage: true, admin: false, allMerchants: false };
    }
    // A credential with the admin scope may list merchants (a merchant's own, or all).
    if (can.admin || a.kind === 'token') {
      try {
        merchants = await api('/admin/merchants');
        if (a.kind === 'token') {
          can.admin = true;
          can.allMerchants = !a.token.startsWith('eftk_') || merchants.length > 1;
        }
      } catch (e) {
        if (!auth) return; // signed out meanwhile
        merchants = [];
      }
    }
    // The operator's credentials (no merchant's) see software updates; a key says by being
    // let in.
    if (a.kind === 'session') {
      can.operator = !a.merchantId;
    } else {
      try {
        await api('/admin/release-keys');
        can.operator = true;
      } catch (e) {
        if (!auth) return;
        can.operator = false;
      }
    }
    if (auth !== a) return;
    if (a.kind === 'token') sessionStorage.setItem(TOKEN_KEY, a.token);
    resetBoard();
    showWho();
    $('login').hidden = true;
    $('board').hidden = false;
    $('sign-out').hidden = false;
    render();
    startLive();
  }

  function showWho() {
    document.body.dataset.auth = auth.kind;
    if (auth.kind === 'session') {
      document.body.dataset.role = auth.role;
      $('whoami-email').textContent = auth.email;
      $('whoami-role').textContent = auth.role;
    } else {
      const key = auth.token.startsWith('eftk_');
      document.body.dataset.role = key ? 'api-key' : 'owner';
      $('whoami-email').textContent = key ? `API key ${auth.token.split('_').slice(0, 2).join('_')}_…` : 'Admin token';
      $('whoami-role').textContent = key ? 'api key' : 'owner';
    }
    $('whoami').hidden = false;
  }

  // Builds what depends on who signed in: the tabs, the merchant filter, the devices' columns;
  // and forgets what the previous person saw.
  function resetBoard() {
    selected = null;
    armed = null;
    apiKeys = [];
    merchantFilter = '';
    auditBefore = null;
    $('timeline-panel').hidden = true;
    $('device-secret').hidden = true;
    $('new-key').hidden = true;
    $('new-key-value').textContent = '';
    $('device-secret-value').textContent = '';
    deviceShown = null;
    configTarget = null;
    configProfile = {};
    campaign = null;
    artifactList = [];
    deviceLoads += 1;
    configLoads += 1;
    campaignLoads += 1;
    webhookShown = null;
    for (const id of ['settlement-panel', 'device-panel', 'campaign-panel', 'config-profile-panel', 'config-effective-panel', 'config-history-panel',
      'webhook-deliveries-panel', 'webhook-secret']) $(id).hidden = true;
    for (const id of ['device-error', 'api-keys-error', 'api-key-form-error', 'audit-error', 'users-error', 'device-detail-error',
      'config-pick-error', 'config-error', 'config-result', 'config-effective-error', 'config-history-error', 'updates-error',
      'campaign-error', 'campaign-result', 'campaign-form-error', 'webhooks-error', 'webhook-form-error', 'webhook-deliveries-error',
      'webhook-secret-value']) $(id).textContent = '';
    for (const id of ['api-keys', 'audit', 'users', 'device-health', 'device-config', 'config-effective', 'config-history', 'cfg-surcharges',
      'campaigns', 'campaign-devices', 'campaign-steps', 'artifacts', 'release-keys', 'webhooks', 'webhook-deliveries',
      'settlements', 'settlement-totals', 'settlement-mismatches']) $(id).tBodies[0].replaceChildren();
    $('settlements-error').textContent = '';
    $('config-level').value = can.operator ? 'operator' : 'merchants';
    $('campaign-form').reset();
    $('campaign-create-panel').hidden = !can.admin;

    const tabs = [{ id: 'overview', label: 'Overview' }, { id: 'settlements', label: 'Settlements' }, { id: 'config', label: 'Configuration' }];
    if (can.operator) tabs.push({ id: 'updates', label: 'Updates' });
    if (can.admin) {
      tabs.push({ id: 'webhooks', label: 'Webhooks' }, { id: 'api-keys', label: 'API keys' }, { id: 'audit', label: 'Audit log' },
        { id: 'users', label: 'People' });
    }
    $('tabs').replaceChildren(...tabs.map((t) => {
      const b = el('button', { type: 'button', id: `tab-${t.id}`, class: 'tab', 'data-view': t.id }, t.label);
      b.addEventListener('click', () => showView(t.id));
      return b;
    }));
    showView('overview');

    const slot = $('merchant-filter-slot');
    if (can.allMerchants) {
      const select = el('select', { id: 'merchant-filter' });
      select.addEventListener('change', () => { merchantFilter = select.value; render(); });
      slot.replaceChildren(el('label', { htmlFor: 'merchant-filter' }, 'Merchant'), select);
    } else {
      slot.replaceChildren();
    }
    $('audit-merchant-wrap').hidden = !can.allMerchants;

    const columns = ['Device', 'State', 'Last seen', 'Health', 'Merchant', 'Registers'];
    const head = columns.map((c) => el('th', { scope: 'col' }, c));
    if (can.manage) head.push(el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Actions')));
    $('devices').tHead.rows[0].replaceChildren(...head);

    buildKeyForm();
    fillMerchants();
  }

  // Puts the merchants into every list of them, keeping what was chosen.
  function fillMerchants() {
    const fill = (select, first) => {
      if (!select) return;
      const was = select.value;
      const options = merchants.map((m) => el('option', { value: m.merchantId }, m.name));
      select.replaceChildren(...(first ? [el('option', { value: '' }, first)] : []), ...options);
      if (Array.from(select.options).some((o) => o.value === was)) select.value = was;
    };
    fill($('merchant-filter'), 'All merchants');
    fill($('audit-merchant'), 'Any');
    fill($('key-merchant'), null);
    fill($('webhook-merchant'), 'The whole installation');
    buildCampaignMerchants();
  }

  // Merchants come and go while someone is signed in: the lists follow.
  async function refreshMerchants() {
    if (!can.admin) return;
    try {
      merchants = await api('/admin/merchants');
      fillMerchants();
    } catch (_) { /* the lists keep what they had */ }
  }

  function showView(id) {
    for (const v of document.querySelectorAll('#board > .view')) v.hidden = v.id !== `view-${id}`;
    for (const t of document.querySelectorAll('#tabs .tab')) {
      if (t.dataset.view === id) t.setAttribute('aria-current', 'page'); else t.removeAttribute('aria-current');
    }
    if (id === 'api-keys') refreshMerchants().then(loadApiKeys);
    if (id === 'audit') refreshMerchants().then(loadAudit);
    if (id === 'users') loadUsers();
    if (id === 'config') prepareConfig();
    if (id === 'updates') refreshMerchants().then(loadUpdates);
    if (id === 'webhooks') refreshMerchants().then(loadWebhooks);
    if (id === 'settlements') loadSettlements();
  }

  async function signInWithPassword(email, password) {
    $('login-error').textContent = '';
    $('sign-in-submit').disabled = true;
    try {
      const response = await fetch('/dashboard/sign-in', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email, password }),
        credentials: 'same-origin',
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401) throw new Error('Wrong email or password.');
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      $('password').value = '';
      sessionStorage.removeItem(TOKEN_KEY);
      await enter(sessionOf(body));
    } catch (e) {
      showLogin(e.message);
    } finally {
      $('sign-in-submit').disabled = false;
    }
  }

  function sessionOf(me) {
    return { kind: 'session', email: me.email, role: me.role, merchantId: me.merchantId || null, csrf: me.csrfToken };
  }

  async function signOut() {
    const was = auth;
    stopLive();
    sessionStorage.removeItem(TOKEN_KEY);
    if (was && was.kind === 'session') {
      try {
        await fetch('/dashboard/sign-out', { method: 'POST', headers: headers('POST'), credentials: 'same-origin' });
      } catch (_) { /* the cookie expires on its own */ }
    }
    showLogin('');
  }

  // On load: a session cookie, else the tab's stored token, else the sign-in form.
  async function resume() {
    try {
      const response = await fetch('/dashboard/session', { credentials: 'same-origin' });
      if (response.ok) {
        await enter(sessionOf(await response.json()));
        return;
      }
    } catch (_) { /* offline: try the token, or ask */ }
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) enter({ kind: 'token', token }); else showLogin();
  }

  // ---- the live stream -------------------------------------------------------------------------
  async function startLive() {
    clearTimeout(retryTimer);
    if (stream) stream.abort();
    const controller = new AbortController();
    stream = controller;
    const mine = auth;
    setLive('connecting', 'Connecting…');
    try {
      const response = await fetch('/admin/events', {
        headers: { ...headers('GET'), Accept: 'text/event-stream' },
        signal: controller.signal,
        credentials: 'same-origin',
      });
      if ([401, 403, 404].includes(response.status)) {
        const body = await response.json().catch(() => ({}));
        if (mine && mine.kind === 'session' && response.status === 401) { sessionEnded(); return; }
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(body.error || 'Signed out');
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
      if (controller.signal.aborted || stream !== controller) return;
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

  // ---- rendering the overview --------------------------------------------------------------------
  // The devices and transactions the merchant filter lets through.
  function shownData() {
    if (!merchantFilter) return data;
    return {
      devices: data.devices.filter((d) => d.merchantId === merchantFilter),
      transactions: data.transactions.filter((t) => t.merchantId === merchantFilter),
    };
  }

  function render() {
    const d = shownData();
    renderTiles(d);
    renderCharts(d);
    renderDevices();
    renderTransactions();
    if (selected) refreshTimeline(false);
    if (deviceShown) refreshDevice(false);
  }

  // A time with its date, in the browser's zone: 2026-12-03 10:56:21.
  function dateTime(iso) {
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function lastHour(d) {
    const since = Date.now() - 3600 * 1000;
    return d.transactions.filter((t) => Date.parse(t.createdAt) >= since);
  }

  function renderTiles(d) {
    const online = d.devices.filter((x) => x.online).length;
    $('tile-online').textContent = `${online} / ${d.devices.length}`;
    $('tile-busy').textContent = String(d.devices.filter((x) => x.busy).length);
    const hour = lastHour(d);
    $('tile-hour').textContent = String(hour.length);
    // Of every transaction of the hour, as the outcome mix counts them (one denominator).
    const approved = hour.filter((t) => category(t) === 'approved').length;
    $('tile-approved').textContent = hour.length ? `${Math.round((approved / hour.length) * 100)} %` : '–';
    const times = hour.map((t) => t.durationMs).filter((x) => typeof x === 'number').sort((a, b) => a - b);
    $('tile-median').textContent = times.length ? duration(times[Math.floor(times.length / 2)]) : '–';
  }

  function renderCharts(d) {
    const hour = lastHour(d);
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

  // A button that acts on its second click within a few seconds (the first one arms it).
  function confirmButton(key, attrs, label, confirmLabel, action) {
    const isArmed = armed && armed.key === key && armed.until > Date.now();
    const b = el('button', { type: 'button', ...attrs, class: `${attrs.class || ''}${isArmed ? ' armed' : ''}` }, isArmed ? confirmLabel : label);
    b.addEventListener('click', () => {
      if (armed && armed.key === key && armed.until > Date.now()) {
        armed = null;
        action();
      } else {
        armed = { key, until: Date.now() + CONFIRM_MS };
        setTimeout(() => { if (armed && armed.key === key && armed.until <= Date.now()) { armed = null; rerenderArmed(); } }, CONFIRM_MS + 50);
      }
      rerenderArmed();
    });
    return b;
  }

  function rerenderArmed() {
    if (!$('view-overview').hidden) renderDevices();
    if (!$('view-api-keys').hidden) renderApiKeys();
    if (!$('view-updates').hidden && campaign) renderCampaignActions();
    if (!$('view-webhooks').hidden) renderWebhooks();
  }

  // The latest health report in a few words; a battery about to die or a printer without paper
  // stands out (class `warn`), the whole report is in the cell's title.
  function healthCell(h) {
    if (!h) return el('td', { class: 'health', 'data-health': 'none' }, '—');
    const parts = [];
    if (h.agent_version) parts.push(`agent ${h.agent_version}`);
    if (h.battery) parts.push(`battery ${h.battery.level_percent}%${h.battery.charging ? ' charging' : ''}`);
    if (h.printer_paper && h.printer_paper !== 'ok') parts.push(`paper ${h.printer_paper.replace('_', ' ')}`);
    if (h.network) parts.push(h.network.kind + (h.network.signal_percent != null ? ` ${h.network.signal_percent}%` : ''));
    const warn = h.lowBattery || h.outOfPaper;
    const title = `reported ${h.reportedAt}` +
      (h.uptime_secs != null ? `; up ${Math.round(h.uptime_secs / 3600)} h` : '') +
      (h.storage_free_bytes != null ? `; ${Math.round(h.storage_free_bytes / 1048576)} MiB free` : '') +
      (h.software_version ? `; ${h.software_version}` : '') +
      (h.firmware_version ? `; ${h.firmware_version}` : '');
    return el('td', { class: `health${warn ? ' warn' : ''}`, 'data-health': warn ? 'warn' : 'ok', title }, parts.join(' · '));
  }

  function renderDevices() {
    const devices = shownData().devices;
    $('devices-count').textContent = `(${devices.length})`;
    const rows = devices.map((d) => {
      const state = d.busy ? 'busy' : d.online ? 'online' : 'offline';
      const stateText = d.busy ? (d.online ? 'Online, busy' : 'Offline, busy') : d.online ? 'Online' : 'Offline';
      const regs = d.registers.length
        ? d.registers.map((r) => el('span', { class: 'reg' }, r.registerName || r.registerId,
          el('span', { class: 'reg-meta' }, ` ${r.businessName} · ${r.vendorName}${Object.keys(r.contact || {}).length ? ` · ${Object.values(r.contact).join(', ')}` : ''}`)))
        : ['none'];
      const row = el('tr', { 'data-device': d.deviceId, 'data-merchant': d.merchantId, class: deviceShown === d.deviceId ? 'selected' : '' },
        el('td', {}, deviceLink(d.deviceId), el('span', { class: 'reg-meta' }, ` ${d.vendor} ${d.model}`)),
        el('td', {}, el('span', { class: `state ${d.online ? 'online' : ''} ${d.busy ? 'busy' : ''}`, 'data-state': state }, stateText)),
        el('td', { title: d.lastSeen || '' }, ago(d.lastSeen)),
        healthCell(d.health),
        el('td', {}, d.merchant),
        el('td', {}, ...regs));
      // Absent, not disabled, for someone who may not change devices.
      if (can.manage) {
        row.append(el('td', { class: 'actions' },
          confirmButton(`rotate:${d.deviceId}`, { id: `rotate-${d.deviceId}`, class: 'rotate', 'data-device': d.deviceId, title: 'Give the device a new secret' },
            'Rotate secret', 'Confirm rotate', () => rotate(d.deviceId)),
          confirmButton(`revoke:${d.deviceId}`, { id: `revoke-${d.deviceId}`, class: 'revoke danger', 'data-device': d.deviceId, title: 'Stop the device connecting' },
            'Revoke', 'Confirm revoke', () => revoke(d.deviceId))));
      }
      return row;
    });
    $('devices').tBodies[0].replaceChildren(...rows);
  }

  async function rotate(deviceId) {
    $('device-error').textContent = '';
    try {
      const r = await api(`/admin/devices/${encodeURIComponent(deviceId)}/rotate-secret`, { method: 'POST' });
      $('device-secret-device').textContent = r.deviceId;
      $('device-secret-value').textContent = r.secret;
      $('device-secret-copy').textContent = 'Copy';
      $('device-secret').hidden = false;
    } catch (e) {
      $('device-error').textContent = `Rotating ${deviceId}: ${e.message}`;
    }
  }

  async function revoke(deviceId) {
    $('device-error').textContent = '';
    try {
      await api(`/admin/devices/${encodeURIComponent(deviceId)}/revoke`, { method: 'POST' });
      $('device-error').textContent = '';
    } catch (e) {
      $('device-error').textContent = `Revoking ${deviceId}: ${e.message}`;
    }
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
    const all = shownData().transactions;
    const shown = all.filter((t) => matches(t, f));
    $('tx-count').textContent = `(${shown.length} of ${all.length})`;
    const rows = shown.map((t) => {
      const cat = category(t);
      const outcome = t.phase === 'completed' ? t.outcome : `${t.phase}${t.displayText ? `: ${t.displayText.split('\n').pop()}` : ''}`;
      const original = t.originalTransactionId
        ? el('span', { class: 'reg-meta original' }, ' of ', openButton(t.originalTransactionId, 'show the original'))
        : null;
      // A tender names the tail of its order's id (the whole id in the title).
      const order = t.orderId
        ? el('span', { class: 'reg-meta order', title: `order ${t.orderId}` }, ` order …${t.orderId.slice(-8)}`)
        : null;
      return el('tr', { 'data-transaction': t.transactionId, 'data-merchant': t.merchantId, 'data-outcome': t.phase === 'completed' ? t.outcome : 'pending', class: selected === t.transactionId ? 'selected' : '' },
        el('td', { title: t.createdAt }, dateTime(t.createdAt)),
        el('td', {}, openButton(t.transactionId, 'show the timeline'), t.posReference ? el('span', { class: 'reg-meta' }, ` ${t.posReference}`) : null),
        el('td', {}, t.registerName || t.registerId),
        el('td', { class: 'mono' }, t.deviceId),
        el('td', {}, t.function, original, order),
        el('td', { class: 'num' }, money(t.amountCents, t.currency, t.minorUnits)),
        el('td', {}, el('span', { class: 'outcome', style: `--c:${COLORS[cat]}`, title: t.resultText || '' }, outcome)),
        el('td', { class: 'num' }, duration(t.durationMs)));
    });
    $('transactions').tBodies[0].replaceChildren(...rows);
  }

  // A transaction's short id that opens its timeline.
  function openButton(id, what) {
    const b = el('button', { type: 'button', class: 'link', title: `${id}: ${what}` }, shortId(id));
    b.addEventListener('click', () => showTimeline(id));
    return b;
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
      $('timeline-summary').textContent = `${t.function} ${money(t.amountCents, t.currency, t.minorUnits)} from ${t.registerName || t.registerId} on ${t.deviceId}: ` +
        (t.phase === 'completed' ? `${t.outcome} ${t.resultText} (${t.completedBy})` : t.phase);
      const original = t.originalTransactionId;
      $('timeline-original').replaceChildren(...(original ? ['Follow-up of ', openButton(original, 'show the original')] : []));
      $('timeline-original').hidden = !original;
      renderPayment(t);
      renderOrder(t);
      $('timeline').replaceChildren(...t.events.map((e) => el('li', {},
        el('time', { dateTime: e.at }, new Date(e.at).toLocaleTimeString([], { hour12: false }) + `.${e.at.slice(20, 23)}`),
        el('span', { class: 'ev' }, e.event), e.detail)));
      if (focus) $('timeline-panel').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      $('timeline-summary').textContent = e.message;
      $('timeline-original').hidden = true;
      $('payment').hidden = true;
      $('order').hidden = true;
      $('timeline').replaceChildren();
    }
  }

  // What a payment comes to with its follow-ups: paid, refunded and still refundable, or for a
  // pre-authorisation held, captured and released; then each follow-up.
  function renderPayment(t) {
    const p = t.payment;
    $('payment').hidden = !p;
    if (!p) return;
    const m = (v) => money(v, p.currency, t.minorUnits);
    const yes = (b) => (b ? 'yes' : 'no');
    const rows = [['approved', 'Approved', yes(p.approved)]];
    if (p.function === 'Card.Authorise') {
      rows.push(['authorised', 'Authorised', m(p.amountAuthorised)], ['captured', 'Captured', m(p.amountCaptured)],
        ['released', 'Released', m(p.amountReleased)]);
    } else {
      rows.push(['amount', 'Amount', m(p.amountTotal)], ['tip', 'Tip', m(p.amountTip)], ['refunded', 'Refunded', m(p.amountRefunded)]);
      // Held by refunds still running: refundable already leaves it out.
      if (Number(p.amountRefunding)) rows.push(['refunding', 'Refunding', m(p.amountRefunding)]);
      rows.push(['refundable', 'Refundable', m(p.amountRefundable)], ['voided', 'Voided', yes(p.voided)]);
    }
    rows.push(['settled', 'Settled', yes(p.settled)]);
    $('payment-amounts').replaceChildren(...rows.map(([key, label, value]) =>
      el('div', { 'data-field': key }, el('dt', {}, label), el('dd', {}, value))));
    $('payment-none').hidden = p.followUps.length > 0;
    $('payment-follow-ups').hidden = !p.followUps.length;
    $('payment-follow-ups').tBodies[0].replaceChildren(...p.followUps.map((f) => el('tr', { 'data-transaction': f.transactionId, 'data-state': f.state },
      el('td', {}, openButton(f.transactionId, 'show this follow-up')),
      el('td', {}, f.function),
      el('td', { class: 'num' }, WHOLE.has(f.function) ? '' : m(f.amount)),
      el('td', {}, FOLLOW_UP_STATES[f.state] || f.state),
      el('td', {}, f.result || ''))));
  }

  // The order a tender pays: its total, what is paid, in flight and left, and every tender (this
  // one marked), each opening its own timeline.
  function renderOrder(t) {
    const o = t.order;
    $('order').hidden = !o;
    if (!o) return;
    const m = (v) => money(v, o.currency, o.minorUnits);
    $('order-title').replaceChildren(`Order ${shortId(o.orderId)}`,
      o.posReference ? el('span', { class: 'reg-meta' }, ` ${o.posReference}`) : null);
    $('order-title').title = o.orderId;
    const rows = [['total', 'Total', m(o.amountTotal)], ['paid', 'Paid', m(o.amountPaid)]];
    if (Number(o.amountInFlight)) rows.push(['in-flight', 'In flight', m(o.amountInFlight)]);
    rows.push(['remaining', 'Remaining', m(o.amountRemaining)],
      ['state', 'State', el('span', { class: 'order-state' }, ORDER_STATES[o.state] || o.state)]);
    $('order-amounts').replaceChildren(...rows.map(([key, label, value]) =>
      el('div', { 'data-field': key }, el('dt', {}, label), el('dd', {}, value))));
    $('order-tenders').tBodies[0].replaceChildren(...o.tenders.map((x) => el('tr', {
      'data-transaction': x.transactionId, 'data-state': x.state, class: x.transactionId === t.transactionId ? 'current' : '',
    },
    el('td', {}, openButton(x.transactionId, 'show this tender')),
    el('td', { class: 'mono' }, x.deviceId),
    el('td', {}, x.function),
    el('td', { class: 'num' }, m(x.amount)),
    el('td', {}, FOLLOW_UP_STATES[x.state] || x.state),
    el('td', {}, x.result || ''))));
  }

  // ---- copying a secret shown once ---------------------------------------------------------------
  async function copy(codeId, buttonId) {
    const text = $(codeId).textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // No clipboard permission: select it, so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents($(codeId));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      const copied = document.execCommand && document.execCommand('copy');
      $(buttonId).textContent = copied ? 'Copied' : 'Selected: press Ctrl+C';
      return;
    }
    $(buttonId).textContent = 'Copied';
  }

  // ---- API keys --------------------------------------------------------------------------------
  function buildKeyForm() {
    $('key-scopes').replaceChildren(...SCOPES.map((s) => {
      const id = `key-scope-${s.scope.replace(':', '-')}`;
      return el('div', { class: 'choice' },
        el('input', { type: 'checkbox', id, name: 'scope', value: s.scope, 'data-pos': String(s.pos) }),
        ' ', el('label', { htmlFor: id }, s.label));
    }));
    // A merchant's admin makes keys of its own merchant only.
    const ownOnly = !can.allMerchants;
    $('key-owner-vendor-choice').hidden = ownOnly;
    $('key-owner-installation-choice').hidden = ownOnly;
    $('key-owner-merchant').checked = true;
    $('key-vendor').value = '';
    $('key-label').value = '';
    $('key-expires').value = '';
    keyOwnerChanged();
  }

  function keyOwner() {
    return document.querySelector('input[name="key-owner"]:checked').value;
  }

  // A vendor key is for the POS API only: the other scopes are unavailable then.
  function keyOwnerChanged() {
    const vendor = keyOwner() === 'vendor';
    for (const box of document.querySelectorAll('#key-scopes input')) {
      const off = vendor && box.dataset.pos !== 'true';
      box.disabled = off;
      if (off) box.checked = false;
    }
    $('key-merchant').disabled = keyOwner() !== 'merchant';
    $('key-vendor').disabled = !vendor;
  }

  async function loadApiKeys() {
    $('api-keys-error').textContent = '';
    try {
      apiKeys = await api('/admin/api-keys');
      renderApiKeys();
    } catch (e) {
      $('api-keys-error').textContent = e.message;
    }
  }

  function keyStatus(k) {
    if (k.revokedAt) return 'revoked';
    if (k.expiresAt && Date.parse(k.expiresAt) <= Date.now()) return 'expired';
    return 'active';
  }

  function renderApiKeys() {
    $('api-keys-count').textContent = `(${apiKeys.length})`;
    $('api-keys').tBodies[0].replaceChildren(...apiKeys.map((k) => {
      const status = keyStatus(k);
      const statusText = status === 'revoked' ? `Revoked ${when(k.revokedAt)}`
        : status === 'expired' ? `Expired ${when(k.expiresAt)}`
          : k.expiresAt ? `Active until ${when(k.expiresAt)}` : 'Active';
      return el('tr', { 'data-key': k.keyId, 'data-status': status },
        el('td', { class: 'mono' }, `${k.prefix}…`),
        el('td', {}, ownerText(k.owner)),
        el('td', {}, k.scopes.join(' ')),
        el('td', {}, k.label),
        el('td', { title: k.createdAt }, when(k.createdAt)),
        el('td', { title: k.lastUsedAt || '' }, ago(k.lastUsedAt)),
        el('td', {}, el('span', { class: `key-status ${status}` }, statusText)),
        el('td', { class: 'actions' }, status === 'revoked' ? null
          : confirmButton(`key:${k.keyId}`, { id: `revoke-key-${k.keyId}`, class: 'revoke-key danger', 'data-key': k.keyId },
            'Revoke', 'Confirm revoke', () => revokeKey(k.keyId))));
    }));
  }

  async function revokeKey(keyId) {
    $('api-keys-error').textContent = '';
    try {
      await api(`/admin/api-keys/${encodeURIComponent(keyId)}/revoke`, { method: 'POST' });
    } catch (e) {
      $('api-keys-error').textContent = `Revoking ${keyId}: ${e.message}`;
    }
    await loadApiKeys();
  }

  async function createKey() {
    $('api-key-form-error').textContent = '';
    const scopes = Array.from(document.querySelectorAll('#key-scopes input:checked')).map((b) => b.value);
    if (!scopes.length) {
      $('api-key-form-error').textContent = 'Choose at least one scope.';
      return;
    }
    const body = { scopes, label: $('key-label').value.trim() };
    const owner = keyOwner();
    if (owner === 'merchant') {
      if (!$('key-merchant').value) {
        $('api-key-form-error').textContent = 'Choose the merchant.';
        return;
      }
      body.merchantId = $('key-merchant').value;
    } else if (owner === 'vendor') {
      body.vendor = $('key-vendor').value.trim();
      if (!body.vendor) {
        $('api-key-form-error').textContent = 'Name the POS vendor.';
        return;
      }
    }
    if ($('key-expires').value) body.expiresAt = new Date(`${$('key-expires').value}T23:59:59`).toISOString();
    $('key-create').disabled = true;
    try {
      const created = await api('/admin/api-keys', { method: 'POST', body });
      $('new-key-prefix').textContent = `${created.prefix}…`;
      $('new-key-value').textContent = created.apiKey;
      $('new-key-copy').textContent = 'Copy';
      $('new-key').hidden = false;
      $('key-label').value = '';
      for (const b of document.querySelectorAll('#key-scopes input')) b.checked = false;
      await loadApiKeys();
      $('new-key').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      $('api-key-form-error').textContent = e.message;
    } finally {
      $('key-create').disabled = false;
    }
  }

  // ---- the audit log ---------------------------------------------------------------------------
  async function loadAudit() {
    $('audit-error').textContent = '';
    const q = new URLSearchParams({ limit: String(AUDIT_PAGE) });
    const action = $('audit-action').value.trim();
    const actor = $('audit-actor').value.trim();
    const merchant = can.allMerchants ? $('audit-merchant').value : '';
    if (action) q.set('action', action);
    if (actor) q.set('actor', actor);
    if (merchant) q.set('merchant', merchant);
    if (auditBefore !== null) q.set('before', String(auditBefore));
    try {
      const entries = await api(`/admin/audit?${q}`);
      renderAudit(entries);
    } catch (e) {
      $('audit-error').textContent = e.message;
    }
  }

  function renderAudit(entries) {
    const first = entries.length ? entries[0].seq : null;
    const last = entries.length ? entries[entries.length - 1].seq : null;
    $('audit-count').textContent = entries.length ? `(#${last} to #${first})` : '(none)';
    $('audit').tBodies[0].replaceChildren(...entries.map((e) => el('tr', { 'data-seq': String(e.seq), 'data-action': e.action },
      el('td', { class: 'num' }, String(e.seq)),
      el('td', { title: e.at }, when(e.at)),
      el('td', {}, e.actor, e.source ? el('span', { class: 'reg-meta' }, ` from ${e.source}`) : null),
      el('td', { class: 'mono' }, e.action),
      el('td', { class: 'mono' }, e.target),
      el('td', {}, e.merchantId ? merchantName(e.merchantId) : ''),
      el('td', {}, el('code', { class: 'detail' }, typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail))))));
    const older = $('audit-older');
    older.disabled = entries.length < AUDIT_PAGE;
    older.dataset.before = last === null ? '' : String(last);
    $('audit-newest').disabled = auditBefore === null;
  }

  // ---- people ----------------------------------------------------------------------------------
  async function loadUsers() {
    $('users-error').textContent = '';
    try {
      const users = await api('/admin/users');
      $('users-count').textContent = `(${users.length})`;
      $('users').tBodies[0].replaceChildren(...users.map((u) => el('tr', { 'data-email': u.email, 'data-role': u.role },
        el('td', {}, u.email),
        el('td', {}, u.role),
        el('td', {}, u.merchantId ? merchantName(u.merchantId) : 'all'),
        el('td', { title: u.createdAt }, when(u.createdAt)),
        el('td', {}, u.lockedUntil ? when(u.lockedUntil) : ''))));
    } catch (e) {
      $('users-error').textContent = e.message;
    }
  }

  // ---- a device's detail: its health history and its effective configuration -------------------
  // The device id in the devices table: a link (not a button, which the table keeps for actions)
  // that opens the device's detail below the table.
  function deviceLink(id) {
    const a = el('a', { href: `#device-${encodeURIComponent(id)}`, class: 'device-link mono', 'data-device': id, title: `${id}: show its health and configuration` }, id);
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      showDevice(id);
    });
    return a;
  }

  async function showDevice(id) {
    deviceShown = id;
    $('device-panel').hidden = false;
    renderDevices();
    await refreshDevice(true);
  }

  function closeDevice() {
    deviceShown = null;
    deviceLoads += 1;
    $('device-panel').hidden = true;
    renderDevices();
  }

  async function refreshDevice(focus) {
    const id = deviceShown;
    const mine = ++deviceLoads;
    const path = `/admin/devices/${encodeURIComponent(id)}`;
    try {
      const [d, config] = await Promise.all([api(path), api(`${path}/config`).catch((e) => e)]);
      if (mine !== deviceLoads) return;
      $('device-detail-error').textContent = '';
      renderDeviceDetail(d);
      if (config instanceof Error) {
        $('device-config-status').textContent = `Its configuration could not be read: ${config.message}`;
        $('device-config-status').dataset.state = 'error';
        $('device-config').tBodies[0].replaceChildren();
      } else {
        renderEffective('device-config', 'device-config-status', config);
      }
      if (focus) $('device-panel').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      if (mine !== deviceLoads) return;
      $('device-title').textContent = `Device ${id}`;
      $('device-detail-error').textContent = e.message;
      $('device-summary').replaceChildren();
      $('device-health').tBodies[0].replaceChildren();
      $('device-config').tBodies[0].replaceChildren();
      $('device-config-status').textContent = '';
    }
  }

  // Definition-list rows `[key, label, value]` as the payment panel shows them.
  function facts(rows) {
    return rows.map(([key, label, value]) => el('div', { 'data-field': key }, el('dt', {}, label), el('dd', {}, value)));
  }

  function renderDeviceDetail(d) {
    $('device-panel').dataset.device = d.deviceId;
    $('device-title').textContent = `Device ${d.deviceId}`;
    const state = d.busy ? (d.online ? 'Online, busy' : 'Offline, busy') : d.online ? 'Online' : 'Offline';
    const rows = [
      ['model', 'Vendor and model', `${d.vendor} ${d.model}`],
      ['merchant', 'Merchant', d.merchant],
      ['state', 'State', state],
      ['last-seen', 'Last seen', d.lastSeen ? when(d.lastSeen) : 'never'],
      ['enrolled', 'Enrolled', when(d.enrolledAt)],
      ['capabilities', 'Capabilities', d.capabilities.length ? d.capabilities.join(', ') : 'none declared'],
      ['registers', 'Registers', d.registers.length ? d.registers.map((r) => r.registerName || r.registerId).join(', ') : 'none'],
    ];
    if (d.siteId) rows.splice(2, 0, ['site', 'Site', d.siteId]);
    $('device-summary').replaceChildren(...facts(rows));
    const history = d.healthHistory || [];
    $('device-health-count').textContent = history.length ? `(latest ${history.length})` : '';
    $('device-health-none').hidden = history.length > 0;
    $('device-health').hidden = !history.length;
    $('device-health').tBodies[0].replaceChildren(...history.map(healthRow));
  }

  const NETWORKS = { ethernet: 'Ethernet', wifi: 'Wi-Fi', cellular: 'Cellular', other: 'Other' };
  const PAPER = { ok: 'ok', low: 'low', out: 'out', no_printer: 'no printer' };

  function bytes(n) {
    if (n === undefined || n === null) return '';
    const units = [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]];
    for (const [unit, size] of units) if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
    return `${n} B`;
  }

  function uptime(s) {
    if (s === undefined || s === null) return '';
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  // One health report as a row; a low battery or a printer out of paper stands out.
  function healthRow(h) {
    const battery = h.battery ? `${h.battery.level_percent}%${h.battery.charging ? ', charging' : ''}` : '';
    const network = h.network
      ? (NETWORKS[h.network.kind] || h.network.kind) + (h.network.signal_percent != null ? `, signal ${h.network.signal_percent}%` : '')
      : '';
    const paper = h.printer_paper ? PAPER[h.printer_paper] || h.printer_paper : '';
    const warn = h.lowBattery || h.outOfPaper;
    return el('tr', { 'data-reported': h.reportedAt, 'data-health': warn ? 'warn' : 'ok', class: warn ? 'warn' : '' },
      el('td', { title: h.reportedAt }, dateTime(h.reportedAt)),
      el('td', { 'data-field': 'agent' }, h.agent_version || ''),
      el('td', { 'data-field': 'software' }, h.software_version || ''),
      el('td', { 'data-field': 'firmware' }, h.firmware_version || ''),
      el('td', { 'data-field': 'battery', class: h.lowBattery ? 'warn' : '' }, battery),
      el('td', { 'data-field': 'network' }, network),
      el('td', { 'data-field': 'paper', class: h.outOfPaper ? 'warn' : '' }, paper),
      el('td', { 'data-field': 'storage', class: 'num', title: h.storage_free_bytes != null ? `${h.storage_free_bytes} bytes` : '' }, bytes(h.storage_free_bytes)),
      el('td', { 'data-field': 'uptime', class: 'num' }, uptime(h.uptime_secs)));
  }

  // ---- configuration profiles ------------------------------------------------------------------
  // The fields of a profile, in the order the form shows them, with the input an error points to.
  const PROFILE_FIELDS = [
    { key: 'tipping', label: 'Tipping', input: 'cfg-tipping-inherit' },
    { key: 'tipPresets', label: 'Tip presets', input: 'cfg-tip-presets' },
    { key: 'surcharges', label: 'Surcharges', input: 'cfg-surcharges-inherit' },
    { key: 'receiptHeader', label: 'Receipt header', input: 'cfg-receipt-header' },
    { key: 'receiptFooter', label: 'Receipt footer', input: 'cfg-receipt-footer' },
    { key: 'currency', label: 'Currency', input: 'cfg-currency' },
    { key: 'language', label: 'Language', input: 'cfg-language' },
    { key: 'cardTimeoutSecs', label: 'Card timeout', input: 'cfg-card-timeout' },
    { key: 'inputTimeoutSecs', label: 'Input timeout', input: 'cfg-input-timeout' },
    { key: 'idleText', label: 'Idle screen text', input: 'cfg-idle-text' },
  ];
  const LEVEL_NAMES = { operator: 'the operator', merchants: 'merchant', sites: 'site', devices: 'device' };

  function configPath(t) {
    return t.level === 'operator' ? '/admin/config/operator' : `/admin/config/${t.level}/${encodeURIComponent(t.id)}`;
  }

  function percentOfBps(bps) {
    return (bps / 100).toFixed(2).replace(/\.?0+$/, '');
  }

  function settingText(key, v) {
    if (v === undefined || v === null) return '—';
    switch (key) {
      case 'tipping': return v ? 'on' : 'off';
      case 'tipPresets': return v.map((p) => `${p}%`).join(', ');
      case 'surcharges': return v.length
        ? v.map((r) => `${r.card === '*' ? 'any other card' : r.card} ${percentOfBps(r.bps)}%${r.cap != null ? ` (at most ${r.cap})` : ''}`).join('; ')
        : 'none';
      case 'cardTimeoutSecs': case 'inputTimeoutSecs': return `${v} s`;
      default: return typeof v === 'string' ? (v === '' ? '(empty)' : v) : JSON.stringify(v);
    }
  }

  // A device's effective settings into a table (`tableId`) and whether it applied them into
  // `statusId`: each field's value and the level it comes from.
  function renderEffective(tableId, statusId, v) {
    let state;
    let text;
    if (!v.supported) {
      state = 'unsupported';
      text = 'This device does not support configuration from the cloud: it keeps its own settings (shown here as it would get them).';
    } else if (v.pending) {
      state = 'pending';
      text = `Version ${v.version} pending: the device ${v.acknowledgedVersion ? `still runs version ${v.acknowledgedVersion}` : 'has applied none yet'}; it applies settings while connected, between transactions.`;
    } else if (v.acknowledgedVersion) {
      state = 'applied';
      text = `Version ${v.acknowledgedVersion} applied ${when(v.acknowledgedAt)}.`;
    } else {
      state = 'none';
      text = 'Nothing sent yet: the device gets its settings when it connects.';
    }
    const status = $(statusId);
    status.dataset.state = state;
    status.dataset.version = String(v.version);
    status.textContent = text;
    const known = PROFILE_FIELDS.map((f) => f.key);
    const keys = [...known.filter((k) => k in v.settings), ...Object.keys(v.settings).filter((k) => !known.includes(k))];
    const versionAt = Object.fromEntries((v.profiles || []).map((p) => [p.level, p.version]));
    $(tableId).tBodies[0].replaceChildren(...keys.map((k) => {
      const source = (v.sources || {})[k] || 'default';
      const f = PROFILE_FIELDS.find((x) => x.key === k);
      return el('tr', { 'data-field': k, 'data-source': source },
        el('th', { scope: 'row' }, f ? f.label : k, el('span', { class: 'reg-meta' }, ` ${k}`)),
        el('td', { class: 'setting' }, settingText(k, v.settings[k])),
        el('td', {}, el('span', { class: `source source-${source}` }, source),
          versionAt[source] ? el('span', { class: 'reg-meta' }, ` version ${versionAt[source]}`) : null));
    }));
  }

  function fillSelect(select, options, empty) {
    const was = select.value;
    const list = options.map((o) => el('option', { value: o.value }, o.label));
    if (!options.length && empty) list.push(el('option', { value: '' }, empty));
    select.replaceChildren(...list);
    if (options.some((o) => o.value === was)) select.value = was;
  }

  // The merchants this person may see: listed when the credential may list them, else those of
  // the devices it sees.
  function knownMerchants() {
    if (merchants.length) return merchants.map((m) => ({ value: m.merchantId, label: m.name }));
    const seen = new Map();
    for (const d of data.devices) if (!seen.has(d.merchantId)) seen.set(d.merchantId, d.merchant || d.merchantId);
    return Array.from(seen, ([value, label]) => ({ value, label }));
  }

  function mayEditLevel(level) {
    return can.manage && (level !== 'operator' || can.operator);
  }

  // Opening the view: the lists follow the merchants and devices, then the chosen level loads.
  function prepareConfig() {
    fillSelect($('config-merchant'), knownMerchants(), 'No merchants');
    fillSelect($('config-device'), data.devices.map((d) => ({ value: d.deviceId, label: `${d.deviceId} · ${d.merchant}` })), 'No devices');
    levelChanged();
  }

  async function levelChanged() {
    const level = $('config-level').value;
    $('config-merchant-wrap').hidden = level !== 'merchants' && level !== 'sites';
    $('config-site-wrap').hidden = level !== 'sites';
    $('config-device-wrap').hidden = level !== 'devices';
    if (level === 'sites') await loadSiteChoices();
    await loadConfig(false);
  }

  async function loadSiteChoices() {
    const merchant = $('config-merchant').value;
    let sites = [];
    $('config-pick-error').textContent = '';
    if (merchant && can.admin) {
      try {
        sites = (await api(`/admin/merchants/${encodeURIComponent(merchant)}/sites`)).map((s) => ({ value: s.siteId, label: s.name }));
      } catch (e) {
        $('config-pick-error').textContent = `Sites: ${e.message}`;
      }
    } else if (merchant) {
      const ids = new Set(data.devices.filter((d) => d.merchantId === merchant && d.siteId).map((d) => d.siteId));
      sites = Array.from(ids, (id) => ({ value: id, label: id }));
    }
    fillSelect($('config-site'), sites, 'No sites');
  }

  // The level and target chosen, or null when the list chosen from is empty.
  function chosenTarget() {
    const level = $('config-level').value;
    if (level === 'operator') return { level, id: '', label: 'the operator (every device)' };
    const select = $(level === 'merchants' ? 'config-merchant' : level === 'sites' ? 'config-site' : 'config-device');
    if (!select.value) return null;
    return { level, id: select.value, label: `${LEVEL_NAMES[level]} ${select.options[select.selectedIndex].textContent}` };
  }

  function hideConfigPanels() {
    for (const id of ['config-profile-panel', 'config-effective-panel', 'config-history-panel']) $(id).hidden = true;
  }

  async function loadConfig(keepResult) {
    const t = chosenTarget();
    configTarget = t;
    const mine = ++configLoads;
    clearConfigError();
    if (!keepResult) {
      $('config-result').textContent = '';
      $('config-result').dataset.version = '';
    }
    $('config-pick-note').hidden = !!t;
    if (!t) {
      const level = $('config-level').value;
      $('config-pick-note').textContent = level === 'sites' ? 'This merchant has no sites.' : `There is no ${LEVEL_NAMES[level]} to choose.`;
      hideConfigPanels();
      return;
    }
    const base = configPath(t);
    try {
      const [profile, history, effective] = await Promise.all([
        api(base),
        api(`${base}/history`).catch((e) => e),
        t.level === 'devices' ? api(`/admin/devices/${encodeURIComponent(t.id)}/config`).catch((e) => e) : null,
      ]);
      if (mine !== configLoads) return;
      $('config-pick-error').textContent = '';
      renderProfile(t, profile);
      renderProfileHistory(history);
      $('config-effective-panel').hidden = t.level !== 'devices';
      if (t.level === 'devices') {
        $('config-effective-error').textContent = effective instanceof Error ? effective.message : '';
        if (effective instanceof Error) {
          $('config-effective').tBodies[0].replaceChildren();
          $('config-effective-status').textContent = '';
        } else {
          renderEffective('config-effective', 'config-effective-status', effective);
        }
      }
    } catch (e) {
      if (mine !== configLoads) return;
      $('config-pick-error').textContent = `The profile of ${t.label}: ${e.message}`;
      hideConfigPanels();
    }
  }

  function renderProfile(t, view) {
    $('config-profile-panel').hidden = false;
    $('config-profile-panel').dataset.level = t.level;
    $('config-profile-panel').dataset.target = t.id;
    $('config-profile-title').textContent = `Profile of ${t.label}`;
    const current = $('config-current');
    current.dataset.version = String(view.version);
    current.textContent = view.version
      ? `Version ${view.version}, set ${when(view.setAt)} by ${view.setBy}.`
      : 'Never set: every field is inherited from the level above.';
    configProfile = view.profile || {};
    fillProfileForm(configProfile);
    const editable = mayEditLevel(t.level);
    for (const f of document.querySelectorAll('#config-form fieldset')) f.disabled = !editable;
    $('config-save').hidden = !editable;
    $('config-revert').hidden = !editable;
    $('config-readonly').hidden = editable;
    $('config-readonly').textContent = !can.manage
      ? 'You may read this profile, not change it.'
      : "Only the operator's credentials change the operator's profile; it applies to your devices unless a lower level sets a field.";
  }

  function renderProfileHistory(history) {
    $('config-history-panel').hidden = false;
    if (history instanceof Error) {
      $('config-history-error').textContent = history.message;
      $('config-history').tBodies[0].replaceChildren();
      $('config-history-count').textContent = '';
      return;
    }
    $('config-history-error').textContent = '';
    const rows = history.slice().sort((a, b) => b.version - a.version);
    $('config-history-count').textContent = `(${rows.length})`;
    $('config-history').tBodies[0].replaceChildren(...rows.map((p) => el('tr', { 'data-version': String(p.version) },
      el('td', { class: 'num' }, String(p.version)),
      el('td', { title: p.setAt || '' }, when(p.setAt)),
      el('td', {}, p.setBy || ''),
      el('td', {}, el('code', { class: 'detail' }, JSON.stringify(p.profile))))));
  }

  // ---- the profile form ------------------------------------------------------------------------
  function surchargeRow(rule) {
    const card = el('input', { type: 'text', class: 'sc-card', autocomplete: 'off', value: rule.card || '' });
    const bps = el('input', { type: 'text', class: 'sc-bps', inputMode: 'numeric', autocomplete: 'off', value: rule.bps != null ? String(rule.bps) : '' });
    const cap = el('input', { type: 'text', class: 'sc-cap', inputMode: 'numeric', autocomplete: 'off', placeholder: 'no cap', value: rule.cap != null ? String(rule.cap) : '' });
    const remove = el('button', { type: 'button', class: 'sc-remove' }, 'Remove');
    const row = el('tr', { class: 'sc-row' }, el('td', {}, card), el('td', {}, bps), el('td', {}, cap), el('td', { class: 'actions' }, remove));
    remove.addEventListener('click', () => {
      row.remove();
      labelSurcharges();
    });
    return row;
  }

  // Each rule's inputs named by its number, for a screen reader.
  function labelSurcharges() {
    Array.from($('cfg-surcharges').tBodies[0].rows).forEach((row, i) => {
      row.querySelector('.sc-card').setAttribute('aria-label', `Card type of rule ${i + 1}`);
      row.querySelector('.sc-bps').setAttribute('aria-label', `Rate in basis points of rule ${i + 1}`);
      row.querySelector('.sc-cap').setAttribute('aria-label', `Cap of rule ${i + 1}`);
      row.querySelector('.sc-remove').setAttribute('aria-label', `Remove rule ${i + 1}`);
    });
  }

  function addSurcharge(rule) {
    $('cfg-surcharges').tBodies[0].append(surchargeRow(rule));
    labelSurcharges();
  }

  function fillProfileForm(p) {
    const has = (k) => p[k] !== undefined && p[k] !== null;
    $('cfg-tipping-inherit').checked = !has('tipping');
    $('cfg-tipping').checked = p.tipping === true;
    $('cfg-tip-presets').value = has('tipPresets') ? p.tipPresets.join(', ') : '';
    $('cfg-surcharges-inherit').checked = !has('surcharges');
    $('cfg-surcharges').tBodies[0].replaceChildren(...(p.surcharges || []).map(surchargeRow));
    labelSurcharges();
    $('cfg-receipt-header').value = p.receiptHeader || '';
    $('cfg-receipt-footer').value = p.receiptFooter || '';
    $('cfg-currency').value = p.currency || '';
    $('cfg-language').value = p.language || '';
    $('cfg-card-timeout').value = has('cardTimeoutSecs') ? String(p.cardTimeoutSecs) : '';
    $('cfg-input-timeout').value = has('inputTimeoutSecs') ? String(p.inputTimeoutSecs) : '';
    $('cfg-idle-text').value = p.idleText || '';
    syncProfileForm();
  }

  // What the inherit boxes switch off.
  function syncProfileForm() {
    $('cfg-tipping').disabled = $('cfg-tipping-inherit').checked;
    $('cfg-surcharge-rules').hidden = $('cfg-surcharges-inherit').checked;
  }

  function fieldError(field, message) {
    const e = new Error(message);
    e.field = field;
    return e;
  }

  function wholeNumber(field, text) {
    const s = text.trim();
    if (!/^\d+$/.test(s)) throw fieldError(field, `${field}: '${s}' is not a whole number`);
    return Number(s);
  }

  // The form as a whole profile: a field left empty (or inheriting) is left out.
  function readProfileForm() {
    const p = {};
    if (!$('cfg-tipping-inherit').checked) p.tipping = $('cfg-tipping').checked;
    const presets = $('cfg-tip-presets').value.trim();
    if (presets) p.tipPresets = presets.split(',').map((s) => s.trim()).filter(Boolean).map((s) => wholeNumber('tipPresets', s.replace(/%$/, '')));
    if (!$('cfg-surcharges-inherit').checked) {
      p.surcharges = [];
      for (const row of $('cfg-surcharges').tBodies[0].rows) {
        const card = row.querySelector('.sc-card').value.trim().toUpperCase();
        const bps = row.querySelector('.sc-bps').value.trim();
        const cap = row.querySelector('.sc-cap').value.trim();
        if (!card && !bps && !cap) continue; // an empty row
        const rule = { card, bps: wholeNumber('surcharges', bps) };
        if (cap) rule.cap = wholeNumber('surcharges', cap);
        p.surcharges.push(rule);
      }
    }
    for (const [key, id] of [['receiptHeader', 'cfg-receipt-header'], ['receiptFooter', 'cfg-receipt-footer'], ['idleText', 'cfg-idle-text']]) {
      const v = $(id).value;
      if (v.trim()) p[key] = v;
    }
    const currency = $('cfg-currency').value.trim().toUpperCase();
    if (currency) p.currency = currency;
    const language = $('cfg-language').value.trim();
    if (language) p.language = language;
    for (const [key, id] of [['cardTimeoutSecs', 'cfg-card-timeout'], ['inputTimeoutSecs', 'cfg-input-timeout']]) {
      if ($(id).value.trim()) p[key] = wholeNumber(key, $(id).value);
    }
    return p;
  }

  function clearConfigError() {
    $('config-error').textContent = '';
    delete $('config-error').dataset.field;
    for (const f of PROFILE_FIELDS) {
      $(f.input).removeAttribute('aria-invalid');
      $(f.input).removeAttribute('aria-describedby');
    }
  }

  // The field an error names (the cloud's messages name fields by their API names).
  function fieldNamed(message) {
    const f = PROFILE_FIELDS.find((x) => message.includes(x.key));
    return f ? f.key : null;
  }

  function showConfigError(message, field) {
    clearConfigError();
    $('config-error').textContent = message;
    const f = PROFILE_FIELDS.find((x) => x.key === field);
    if (!f) return;
    $('config-error').dataset.field = f.key;
    $(f.input).setAttribute('aria-invalid', 'true');
    $(f.input).setAttribute('aria-describedby', 'config-error');
    $(f.input).focus();
  }

  async function saveProfile() {
    const t = configTarget;
    if (!t) return;
    clearConfigError();
    $('config-result').textContent = '';
    let profile;
    try {
      profile = readProfileForm();
    } catch (e) {
      showConfigError(e.message, e.field);
      return;
    }
    $('config-save').disabled = true;
    try {
      const r = await api(configPath(t), { method: 'PUT', body: profile });
      const result = $('config-result');
      result.dataset.version = String(r.version);
      result.dataset.devicesChanged = String(r.devicesChanged);
      result.dataset.devicesSent = String(r.devicesSent);
      const later = r.devicesChanged - r.devicesSent;
      result.textContent = `Saved as version ${r.version}. Devices whose settings changed: ${r.devicesChanged}; sent them now: ${r.devicesSent}` +
        (later > 0 ? ` (the rest get them when they connect, or after the transaction they are running).` : '.');
      if (configTarget === t) await loadConfig(true);
    } catch (e) {
      showConfigError(e.message, fieldNamed(e.message));
    } finally {
      $('config-save').disabled = false;
    }
  }

  // From a device's detail to its own profile.
  function openDeviceProfile(id) {
    $('config-level').value = 'devices';
    fillSelect($('config-device'), data.devices.map((d) => ({ value: d.deviceId, label: `${d.deviceId} · ${d.merchant}` })), 'No devices');
    $('config-device').value = id;
    showView('config');
  }

  // ---- webhook endpoints -----------------------------------------------------------------------
  let webhooks = [];

  async function loadWebhooks() {
    $('webhooks-error').textContent = '';
    $('webhook-merchant-wrap').hidden = !can.allMerchants;
    try {
      webhooks = (await api('/admin/webhooks')).endpoints;
    } catch (e) {
      $('webhooks-error').textContent = e.message;
      webhooks = [];
    }
    renderWebhooks();
  }

  function webhookState(w) {
    if (!w.enabled) return w.disabledReason ? `Disabled: ${w.disabledReason}` : 'Disabled';
    if (w.failingSince) return `Failing since ${when(w.failingSince)} (${w.attempts} attempts)`;
    return 'Enabled';
  }

  function renderWebhooks() {
    $('webhooks-count').textContent = `(${webhooks.length})`;
    $('webhooks-none').hidden = webhooks.length > 0;
    $('webhooks').tBodies[0].replaceChildren(...webhooks.map((w) => {
      const owner = w.merchantId ? merchantName(w.merchantId) : w.vendor ? `Vendor ${w.vendor}` : 'Installation';
      const state = !w.enabled ? 'disabled' : w.failingSince ? 'failing' : 'enabled';
      const toggle = el('button', { type: 'button', class: 'webhook-toggle', 'data-endpoint': w.id }, w.enabled ? 'Disable' : 'Enable');
      toggle.addEventListener('click', () => changeWebhook(w.id, { enabled: !w.enabled }));
      const log = el('button', { type: 'button', class: 'webhook-log', 'data-endpoint': w.id }, 'Deliveries');
      log.addEventListener('click', () => showDeliveries(w.id));
      return el('tr', { 'data-endpoint': w.id, 'data-state': state },
        el('td', { class: 'mono', title: w.id }, shortId(w.id)),
        el('td', { class: 'mono' }, w.url),
        el('td', {}, w.eventTypes.join(', ')),
        el('td', {}, owner),
        el('td', {}, el('span', { class: `key-status ${state === 'enabled' ? 'active' : 'revoked'}` }, webhookState(w))),
        el('td', { class: 'actions' }, log, toggle,
          confirmButton(`rotate:${w.id}`, { class: 'webhook-rotate', 'data-endpoint': w.id }, 'Rotate secret', 'Confirm rotate', () => rotateWebhook(w.id)),
          confirmButton(`delete:${w.id}`, { class: 'webhook-delete danger', 'data-endpoint': w.id }, 'Delete', 'Confirm delete', () => deleteWebhook(w.id))));
    }));
  }

  function showWebhookSecret(id, secret) {
    $('webhook-secret-id').textContent = id;
    $('webhook-secret-value').textContent = secret;
    $('webhook-secret-copy').textContent = 'Copy';
    $('webhook-secret').hidden = false;
  }

  async function createWebhook() {
    $('webhook-form-error').textContent = '';
    const body = { url: $('webhook-url').value.trim(), description: $('webhook-description').value.trim() };
    const types = $('webhook-types').value.split(',').map((t) => t.trim()).filter(Boolean);
    if (types.length) body.eventTypes = types;
    if (can.allMerchants && $('webhook-merchant').value) body.merchantId = $('webhook-merchant').value;
    $('webhook-create').disabled = true;
    try {
      const created = await api('/admin/webhooks', { method: 'POST', body });
      showWebhookSecret(created.id, created.secret);
      $('webhook-form').reset();
      await loadWebhooks();
    } catch (e) {
      $('webhook-form-error').textContent = e.message;
    } finally {
      $('webhook-create').disabled = false;
    }
  }

  async function changeWebhook(id, body) {
    $('webhooks-error').textContent = '';
    try {
      await api(`/admin/webhooks/${encodeURIComponent(id)}`, { method: 'PATCH', body });
    } catch (e) {
      $('webhooks-error').textContent = `${id}: ${e.message}`;
    }
    await loadWebhooks();
  }

  async function rotateWebhook(id) {
    $('webhooks-error').textContent = '';
    try {
      const r = await api(`/admin/webhooks/${encodeURIComponent(id)}/rotate-secret`, { method: 'POST', body: {} });
      showWebhookSecret(id, r.secret);
    } catch (e) {
      $('webhooks-error').textContent = `${id}: ${e.message}`;
    }
    await loadWebhooks();
  }

  async function deleteWebhook(id) {
    $('webhooks-error').textContent = '';
    try {
      await api(`/admin/webhooks/${encodeURIComponent(id)}`, { method: 'DELETE' });
      if (webhookShown === id) closeDeliveries();
    } catch (e) {
      $('webhooks-error').textContent = `${id}: ${e.message}`;
    }
    await loadWebhooks();
  }

  function closeDeliveries() {
    webhookShown = null;
    $('webhook-deliveries-panel').hidden = true;
  }

  async function showDeliveries(id) {
    webhookShown = id;
    $('webhook-deliveries-title').textContent = `Deliveries of ${shortId(id)}`;
    $('webhook-deliveries-panel').hidden = false;
    $('webhook-deliveries-error').textContent = '';
    let log = [];
    try {
      log = (await api(`/admin/webhooks/${encodeURIComponent(id)}/deliveries?limit=100`)).deliveries;
    } catch (e) {
      $('webhook-deliveries-error').textContent = e.message;
    }
    if (webhookShown !== id) return;
    $('webhook-deliveries').tBodies[0].replaceChildren(...log.map((d) => {
      const again = el('button', { type: 'button', class: 'webhook-redeliver', 'data-event': d.eventId }, 'Redeliver');
      again.addEventListener('click', async () => {
        try {
          await api(`/admin/webhooks/${encodeURIComponent(id)}/redeliver`, { method: 'POST', body: { eventId: d.eventId } });
          again.textContent = 'Queued';
          again.disabled = true;
        } catch (e) {
          $('webhook-deliveries-error').textContent = e.message;
        }
      });
      const outcome = d.delivered ? `Delivered (HTTP ${d.responseCode})` : `Failed: ${d.error || `HTTP ${d.responseCode}`}`;
      return el('tr', { 'data-delivered': String(d.delivered) },
        el('td', { title: d.at }, when(d.at)),
        el('td', { class: 'mono', title: d.eventId }, shortId(d.eventId)),
        el('td', {}, d.eventType),
        el('td', { class: 'num' }, String(d.attempt)),
        el('td', {}, outcome),
        el('td', { class: 'actions' }, again));
    }));
  }

  // ---- software updates ------------------------------------------------------------------------
  const DEVICE_UPDATE_STATES = ['pending', 'offered', 'installed', 'failed', 'rollback_pending', 'rollback_offered', 'rolled_back', 'rollback_failed'];
  const CAMPAIGN_DONE = {
    pause: 'Paused: no device is offered the update until the campaign is resumed.',
    resume: 'Resumed: the next devices are offered the update.',
    cancel: 'Cancelled: nothing more is offered; devices keep what they installed.',
    rollback: 'Rolling back: every device that installed the update is offered the version chosen.',
  };

  function words(s) {
    return String(s).replace(/_/g, ' ');
  }

  function countsText(counts) {
    const known = DEVICE_UPDATE_STATES.filter((s) => counts[s]);
    const other = Object.keys(counts).filter((s) => !DEVICE_UPDATE_STATES.includes(s) && counts[s]);
    const parts = [...known, ...other].map((s) => `${words(s)} ${counts[s]}`);
    return parts.length ? parts.join(' · ') : 'no devices';
  }

  function stateBadge(state, kind) {
    return el('span', { class: `ustate ${kind}-${String(state).replace(/_/g, '-')}`, 'data-state': state }, words(state));
  }

  // ---- settlements: each cutover's reconciliation, and the exports ---------------------------
  function settlementQuery(extra) {
    const q = new URLSearchParams(extra || {});
    if (merchantFilter) q.set('merchant', merchantFilter);
    const text = q.toString();
    return text ? `?${text}` : '';
  }

  // Amounts of a batch are minor units; shown with two decimals (the terminals' usual).
  function minor(n) {
    if (n === undefined || n === null) return '';
    const v = Number(n);
    const sign = v < 0 ? '-' : '';
    const a = Math.abs(v);
    return `${sign}${Math.floor(a / 100)}.${String(a % 100).padStart(2, '0')}`;
  }

  async function loadSettlements() {
    $('settlements-error').textContent = '';
    let list;
    try {
      list = await api(`/admin/settlements${settlementQuery()}`);
    } catch (e) {
      $('settlements-error').textContent = e.message;
      return;
    }
    $('settlements-count').textContent = `(${list.length})`;
    $('settlements-none').hidden = list.length > 0;
    $('settlements').tBodies[0].replaceChildren(...list.map((s) => {
      const open = el('button', { type: 'button', class: 'link settlement-open', id: `settlement-open-${s.transactionId}`, title: s.transactionId }, shortId(s.transactionId));
      open.addEventListener('click', () => showSettlement(s.transactionId));
      return el('tr', { 'data-settlement': s.transactionId, 'data-status': s.status },
        el('td', {}, when(s.periodEnd)),
        el('td', {}, s.deviceId),
        el('td', {}, el('span', { class: `recon recon-${s.status}`, 'data-state': s.status }, words(s.status))),
        el('td', { class: 'num' }, String(s.mismatchCount)),
        el('td', { class: 'num' }, s.terminalTotals ? minor(s.terminalTotals.net) : '—'),
        el('td', { class: 'num' }, minor(s.cloudTotals.net)),
        el('td', {}, open));
    }));
  }

  async function showSettlement(id) {
    let r;
    try {
      r = await api(`/admin/settlements/${encodeURIComponent(id)}/reconciliation`);
    } catch (e) {
      $('settlements-error').textContent = e.message;
      return;
    }
    const from = r.periodStart ? when(r.periodStart) : 'the device\'s first transaction';
    $('settlement-summary').textContent = `Device ${r.deviceId}, ${from} to ${when(r.periodEnd)}: ${words(r.status)}`
      + (r.itemised ? '' : ' (the terminal listed no transactions: totals only)')
      + (r.terminalConsistent === false ? '; the terminal\'s list does not add up to its own totals' : '') + '.';
    const types = new Set([...r.terminalByCardType, ...r.cloudByCardType].map((t) => t.cardType));
    const side = (list, type) => list.find((t) => t.cardType === type) || { purchaseCount: 0, purchaseAmount: 0, refundCount: 0, refundAmount: 0 };
    const differs = new Set(r.differences.map((d) => d.cardType));
    $('settlement-totals').tBodies[0].replaceChildren(...[...types].sort().map((type) => {
      const t = side(r.terminalByCardType, type);
      const c = side(r.cloudByCardType, type);
      return el('tr', { class: differs.has(type) ? 'differs' : '' },
        el('td', {}, type),
        el('td', { class: 'num' }, `${t.purchaseCount} · ${minor(t.purchaseAmount)}`),
        el('td', { class: 'num' }, `${c.purchaseCount} · ${minor(c.purchaseAmount)}`),
        el('td', { class: 'num' }, `${t.refundCount} · ${minor(t.refundAmount)}`),
        el('td', { class: 'num' }, `${c.refundCount} · ${minor(c.refundAmount)}`));
    }));
    const entry = (e) => (e ? `${e.function} ${e.cardType} ${minor(e.amount)}` : '—');
    $('settlement-mismatches').tBodies[0].replaceChildren(...r.mismatches.map((m) => el('tr', { 'data-transaction': m.transactionId },
      el('td', { title: m.transactionId }, shortId(m.transactionId)),
      el('td', {}, m.reasons.map(words).join(', ') + (m.note ? ` (${m.note})` : '')),
      el('td', {}, entry(m.terminal)),
      el('td', {}, entry(m.cloud)))));
    $('settlement-balanced').hidden = r.mismatches.length > 0 || r.differences.length > 0;
    $('settlement-panel').hidden = false;
  }

  // An export as a file: fetched with this board's credential (a token cannot ride on a link),
  // then handed to the browser as a download.
  async function download(kind, format) {
    $('settlements-error').textContent = '';
    try {
      const response = await fetch(`/admin/exports/${kind}${settlementQuery({ format })}`, { headers: headers('GET'), credentials: 'same-origin' });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || `HTTP ${response.status}`);
      }
      const url = URL.createObjectURL(await response.blob());
      const a = el('a', { href: url, download: `${kind}.${format}` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      $('settlements-error').textContent = `Download failed: ${e.message}`;
    }
  }

  async function loadUpdates() {
    $('updates-error').textContent = '';
    try {
      const [list, arts, keys] = await Promise.all([api('/admin/campaigns'), api('/admin/artifacts'), api('/admin/release-keys')]);
      renderCampaigns(list);
      artifactList = arts;
      renderArtifacts(arts);
      renderReleaseKeys(keys);
      fillArtifactChoices();
    } catch (e) {
      updatesError(e);
      return;
    }
    if (campaign) await refreshCampaign();
  }

  function updatesError(e) {
    $('updates-error').textContent = e.status === 403 ? `Software updates are the operator's: ${e.message}` : e.message;
  }

  async function loadCampaignList() {
    try {
      renderCampaigns(await api('/admin/campaigns'));
    } catch (e) {
      updatesError(e);
    }
  }

  function renderCampaigns(list) {
    $('campaigns-count').textContent = `(${list.length})`;
    $('campaigns-none').hidden = list.length > 0;
    $('campaigns').tBodies[0].replaceChildren(...list.map((c) => {
      const open = el('button', { type: 'button', class: 'link name-link campaign-open', id: `campaign-open-${c.campaignId}`, title: `${c.campaignId}: show its devices and steps` }, c.name);
      open.addEventListener('click', () => showCampaign(c.campaignId));
      return el('tr', { 'data-campaign': c.campaignId, 'data-state': c.state, class: campaign && campaign.campaignId === c.campaignId ? 'selected' : '' },
        el('td', {}, open),
        el('td', {}, c.version || el('span', { class: 'reg-meta' }, c.artifactId)),
        el('td', {}, stateBadge(c.state, 'campaign')),
        el('td', { class: 'counts' }, countsText(c.counts || {})),
        el('td', {}, `${c.canary} · ${c.waveSize} · ${c.failureThreshold}`),
        el('td', {}, c.window || 'any time'),
        el('td', { title: c.createdAt }, when(c.createdAt), el('span', { class: 'reg-meta' }, ` by ${c.createdBy}`)));
    }));
  }

  async function showCampaign(id) {
    campaign = { campaignId: id };
    $('campaign-result').textContent = '';
    $('campaign-error').textContent = '';
    await refreshCampaign(true);
  }

  async function refreshCampaign(focus) {
    const id = campaign.campaignId;
    const mine = ++campaignLoads;
    try {
      const c = await api(`/admin/campaigns/${encodeURIComponent(id)}`);
      if (mine !== campaignLoads || !campaign || campaign.campaignId !== id) return;
      campaign = c;
      renderCampaign();
      if (focus) $('campaign-panel').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      if (mine !== campaignLoads) return;
      $('campaign-panel').hidden = false;
      $('campaign-error').textContent = e.message;
    }
  }

  function closeCampaign() {
    campaign = null;
    campaignLoads += 1;
    $('campaign-panel').hidden = true;
    loadCampaignList();
  }

  function renderCampaign() {
    const c = campaign;
    const panel = $('campaign-panel');
    panel.hidden = false;
    panel.dataset.campaign = c.campaignId;
    panel.dataset.state = c.state;
    $('campaign-title').textContent = `Campaign ${c.name}`;
    $('campaign-title').title = c.campaignId;
    const rows = [
      ['state', 'State', stateBadge(c.state, 'campaign')],
      ['version', 'Version', c.version || ''],
      ['artifact', 'Artifact', el('span', { class: 'mono' }, c.artifactId)],
    ];
    if (c.rollbackArtifactId) rows.push(['rollback', 'Rolling back to', el('span', { class: 'mono' }, c.rollbackArtifactId)]);
    rows.push(
      ['canary', 'Canary devices', String(c.canary)],
      ['wave', 'Wave size', String(c.waveSize)],
      ['threshold', 'Pauses after failures', String(c.failureThreshold)],
      ['window', 'Window', c.window || 'any time'],
      ['devices', 'Devices', countsText(c.counts || {})],
      ['created', 'Created', `${when(c.createdAt)} by ${c.createdBy}`],
    );
    $('campaign-summary').replaceChildren(...facts(rows));
    renderCampaignActions();
    const devices = c.devices || [];
    $('campaign-devices-count').textContent = `(${devices.length})`;
    $('campaign-devices').tBodies[0].replaceChildren(...devices.map((d) => el('tr', { 'data-device': d.deviceId, 'data-state': d.state },
      el('td', { class: 'mono' }, d.deviceId),
      el('td', { class: 'num' }, String(d.wave)),
      el('td', {}, stateBadge(d.state, 'device')),
      el('td', {}, d.step ? words(d.step) : ''),
      el('td', {}, d.reason || ''),
      el('td', { title: d.updatedAt }, when(d.updatedAt)))));
    const steps = c.steps || [];
    $('campaign-steps-count').textContent = `(${steps.length})`;
    $('campaign-steps').tBodies[0].replaceChildren(...steps.map((s) => el('tr', { 'data-device': s.deviceId, 'data-step': s.step },
      el('td', { title: s.at }, dateTime(s.at)),
      el('td', { class: 'mono' }, s.deviceId),
      el('td', {}, s.version),
      el('td', {}, words(s.step)),
      el('td', {}, s.reason || ''))));
    for (const tr of $('campaigns').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.campaign === c.campaignId);
  }

  // The buttons a campaign's state allows; none for someone who may only read.
  function renderCampaignActions() {
    const c = campaign;
    if (!c || !c.state) return;
    if (!can.admin) {
      $('campaign-buttons').replaceChildren();
      $('campaign-rollback-form').hidden = true;
      return;
    }
    const button = (action, label) => {
      const b = el('button', { type: 'button', id: `campaign-${action}` }, label);
      b.addEventListener('click', () => campaignAction(action));
      return b;
    };
    const buttons = [];
    if (c.state === 'running') buttons.push(button('pause', 'Pause'));
    if (c.state === 'paused') buttons.push(button('resume', 'Resume'));
    if (['running', 'paused', 'rolling_back'].includes(c.state)) {
      buttons.push(confirmButton(`campaign-cancel:${c.campaignId}`, { id: 'campaign-cancel', class: 'danger' },
        'Cancel', 'Confirm cancel', () => campaignAction('cancel')));
    }
    $('campaign-buttons').replaceChildren(...buttons);
    const rollback = ['running', 'paused', 'completed'].includes(c.state);
    $('campaign-rollback-form').hidden = !rollback;
    fillRollbackChoices();
    $('campaign-rollback-slot').replaceChildren(...(rollback ? [confirmButton(`campaign-rollback:${c.campaignId}`, { id: 'campaign-rollback', class: 'danger' },
      'Roll back', 'Confirm roll back', rollBack)] : []));
  }

  async function campaignAction(action, body) {
    const id = campaign.campaignId;
    $('campaign-error').textContent = '';
    $('campaign-result').textContent = '';
    try {
      const c = await api(`/admin/campaigns/${encodeURIComponent(id)}/${action}`, { method: 'POST', body });
      if (campaign && campaign.campaignId === id) {
        campaignLoads += 1; // an older read in flight must not undo this answer
        campaign = c;
        renderCampaign();
        $('campaign-result').textContent = CAMPAIGN_DONE[action];
      }
    } catch (e) {
      $('campaign-error').textContent = e.message;
      renderCampaignActions();
    }
    await loadCampaignList();
  }

  function rollBack() {
    const artifactId = $('campaign-rollback-artifact').value;
    if (!artifactId) {
      $('campaign-error').textContent = 'Choose the version to return to.';
      renderCampaignActions();
      return;
    }
    campaignAction('rollback', { artifactId });
  }

  function artifactLabel(a) {
    return `${a.version} (…${a.artifactId.slice(-8)})`;
  }

  function fillArtifactChoices() {
    const ready = artifactList.filter((a) => a.ready);
    fillSelect($('cn-artifact'), ready.map((a) => ({ value: a.artifactId, label: artifactLabel(a) })), 'No artifact ready');
    fillRollbackChoices();
  }

  function fillRollbackChoices() {
    const own = campaign ? campaign.artifactId : null;
    const choices = artifactList.filter((a) => a.ready && a.artifactId !== own);
    fillSelect($('campaign-rollback-artifact'), choices.map((a) => ({ value: a.artifactId, label: artifactLabel(a) })), 'No other artifact');
  }

  function renderArtifacts(list) {
    $('artifacts-count').textContent = `(${list.length})`;
    $('artifacts').tBodies[0].replaceChildren(...list.map((a) => el('tr', { 'data-artifact': a.artifactId },
      el('td', {}, a.version),
      el('td', { class: 'mono', title: a.artifactId }, shortId(a.artifactId)),
      el('td', { class: 'mono url' }, a.stored ? `stored: ${a.url}` : a.url),
      el('td', {}, a.ready ? 'yes' : 'no: upload its file'),
      el('td', { class: 'num', title: `${a.size} bytes` }, bytes(a.size)),
      el('td', { class: 'mono', title: a.sha256 }, `${a.sha256.slice(0, 12)}…`),
      el('td', { class: 'mono' }, a.keyId),
      el('td', { title: a.createdAt }, when(a.createdAt)))));
  }

  function renderReleaseKeys(list) {
    $('release-keys-count').textContent = `(${list.length})`;
    $('release-keys').tBodies[0].replaceChildren(...list.map((k) => el('tr', { 'data-key': k.keyId },
      el('td', {}, k.name),
      el('td', { class: 'mono' }, k.keyId),
      el('td', { class: 'mono', title: k.publicKey }, `${k.publicKey.slice(0, 16)}…`),
      el('td', { title: k.createdAt }, when(k.createdAt)))));
  }

  // The merchants a new campaign may target, as boxes (those ticked stay ticked).
  function buildCampaignMerchants() {
    const box = $('cn-merchants');
    const ticked = new Set(Array.from(box.querySelectorAll('input:checked'), (b) => b.value));
    box.replaceChildren(...merchants.map((m) => {
      const id = `cn-merchant-${m.merchantId}`;
      return el('div', { class: 'choice' },
        el('input', { type: 'checkbox', id, value: m.merchantId, checked: ticked.has(m.merchantId) }),
        ' ', el('label', { htmlFor: id }, `Merchant ${m.name}`));
    }));
  }

  function commaList(id) {
    return $(id).value.split(',').map((s) => s.trim()).filter(Boolean);
  }

  async function createCampaign() {
    const error = $('campaign-form-error');
    error.textContent = '';
    const body = { name: $('cn-name').value.trim(), artifactId: $('cn-artifact').value, target: {} };
    if (!body.name) {
      error.textContent = 'Name the campaign.';
      $('cn-name').focus();
      return;
    }
    if (!body.artifactId) {
      error.textContent = 'Choose the artifact to roll out.';
      return;
    }
    const target = {
      deviceIds: commaList('cn-devices'),
      merchantIds: Array.from($('cn-merchants').querySelectorAll('input:checked'), (b) => b.value),
      siteIds: commaList('cn-sites'),
      models: commaList('cn-models'),
      versions: commaList('cn-versions'),
    };
    for (const [k, v] of Object.entries(target)) if (v.length) body.target[k] = v;
    const start = $('cn-window-start').value;
    const end = $('cn-window-end').value;
    if (start || end) {
      if (!start || !end) {
        error.textContent = 'Give the window both its start and its end, or neither (any time).';
        return;
      }
      body.window = { start, end };
    }
    try {
      body.canary = wholeNumber('canary', $('cn-canary').value);
      body.waveSize = wholeNumber('waveSize', $('cn-wave').value);
      body.failureThreshold = wholeNumber('failureThreshold', $('cn-threshold').value);
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    $('cn-create').disabled = true;
    try {
      const c = await api('/admin/campaigns', { method: 'POST', body });
      campaignLoads += 1;
      campaign = c;
      renderCampaign();
      $('campaign-result').textContent = `Started: ${(c.devices || []).length} devices, the canary first.`;
      $('cn-name').value = '';
      await loadCampaignList();
      $('campaign-panel').scrollIntoView({ block: 'nearest' });
    } catch (e) {
      error.textContent = e.message;
    } finally {
      $('cn-create').disabled = false;
    }
  }

  // ---- events ----------------------------------------------------------------------------------
  $('password-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signInWithPassword($('email').value.trim(), $('password').value);
  });
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    enter({ kind: 'token', token: $('token').value.trim() });
  });
  $('sign-out').addEventListener('click', signOut);
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
  $('device-secret-copy').addEventListener('click', () => copy('device-secret-value', 'device-secret-copy'));
  $('device-secret-dismiss').addEventListener('click', () => {
    $('device-secret').hidden = true;
    $('device-secret-value').textContent = '';
  });
  $('new-key-copy').addEventListener('click', () => copy('new-key-value', 'new-key-copy'));
  $('new-key-dismiss').addEventListener('click', () => {
    $('new-key').hidden = true;
    $('new-key-value').textContent = '';
  });
  for (const r of document.querySelectorAll('input[name="key-owner"]')) r.addEventListener('change', keyOwnerChanged);
  $('api-key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    createKey();
  });
  $('audit-filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    auditBefore = null;
    loadAudit();
  });
  $('audit-older').addEventListener('click', () => {
    const before = $('audit-older').dataset.before;
    if (!before) return;
    auditBefore = Number(before);
    loadAudit();
  });
  $('audit-newest').addEventListener('click', () => {
    auditBefore = null;
    loadAudit();
  });
  $('device-close').addEventListener('click', closeDevice);
  $('device-edit-config').addEventListener('click', () => { if (deviceShown) openDeviceProfile(deviceShown); });
  $('config-pick').addEventListener('submit', (ev) => ev.preventDefault());
  $('config-level').addEventListener('change', levelChanged);
  $('config-merchant').addEventListener('change', () => ($('config-level').value === 'sites' ? loadSiteChoices().then(() => loadConfig(false)) : loadConfig(false)));
  $('config-site').addEventListener('change', () => loadConfig(false));
  $('config-device').addEventListener('change', () => loadConfig(false));
  $('cfg-tipping-inherit').addEventListener('change', syncProfileForm);
  $('cfg-surcharges-inherit').addEventListener('change', () => {
    // Overriding with no rule yet: one empty row to fill in (left empty: no surcharge here).
    if (!$('cfg-surcharges-inherit').checked && !$('cfg-surcharges').tBodies[0].rows.length) addSurcharge({});
    syncProfileForm();
  });
  $('cfg-surcharge-add').addEventListener('click', () => addSurcharge({}));
  $('config-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    saveProfile();
  });
  $('config-revert').addEventListener('click', () => {
    clearConfigError();
    fillProfileForm(configProfile);
  });
  $('campaign-close').addEventListener('click', closeCampaign);
  $('webhook-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    createWebhook();
  });
  $('webhook-deliveries-close').addEventListener('click', closeDeliveries);
  $('webhook-secret-copy').addEventListener('click', () => copy('webhook-secret-value', 'webhook-secret-copy'));
  $('webhook-secret-dismiss').addEventListener('click', () => {
    $('webhook-secret').hidden = true;
    $('webhook-secret-value').textContent = '';
  });
  $('settlement-close').addEventListener('click', () => { $('settlement-panel').hidden = true; });
  for (const kind of ['transactions', 'settlements']) {
    for (const format of ['csv', 'json']) {
      $(`export-${kind}-${format}`).addEventListener('click', () => download(kind, format));
    }
  }
  $('campaign-rollback-form').addEventListener('submit', (ev) => ev.preventDefault());
  $('campaign-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    createCampaign();
  });
  setInterval(() => { if (!$('board').hidden && !$('view-overview').hidden) renderDevices(); }, 5000);
  // Campaigns move on their own (devices report steps): their view follows while open.
  setInterval(() => {
    if ($('board').hidden || $('view-updates').hidden) return;
    loadCampaignList();
    if (campaign) refreshCampaign(false);
  }, 5000);

  resume();
})();
