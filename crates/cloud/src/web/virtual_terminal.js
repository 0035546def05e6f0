// eftcloud virtual terminal: a payment terminal in a browser tab. It speaks the device protocol
// (docs/device-protocol.md) to /device/v1 exactly as the reference agent does: hello with the
// journal's unacknowledged results, pong, pairing codes refreshed before expiry, transaction ->
// accept -> start/abort -> progress -> result until result_ack, follow-ups of earlier payments
// (referenced refund, void, tip adjustment, pre-authorisation top-up, capture and release) and
// amounts in any currency. Besides payments it does every terminal action: a cart on the
// customer's display, the customer's input (text, email, phone, number, a signature drawn with
// mouse, pen or finger, a choice, yes or no), slips on its printer and QR codes on its screen.
// It runs with the settings the cloud pushes (`config`: tipping, surcharges, receipt text, the
// default currency, timeouts, the idle screen), applied between transactions and acknowledged.
// The clerk and the customer are the buttons. Plain JavaScript, no build step, no external
// resources; the QR codes and barcodes come from virtual_terminal_codes.js, served in front of
// this file in the same script.

(() => {
  const $ = (id) => document.getElementById(id);

  const PROTOCOL_VERSION = 1;
  const AGENT_VERSION = 'virtual-terminal/1';
  const CREDENTIALS_KEY = 'eftcloud.vt.credentials'; // sessionStorage: one device per tab
  const JOURNAL_PREFIX = 'eftcloud.vt.journal.'; // localStorage, per device id
  const STAN_PREFIX = 'eftcloud.vt.stan.';
  const CONFIG_PREFIX = 'eftcloud.vt.config.'; // localStorage, per device id: the applied config
  const BACKOFF_MIN_MS = 200;
  const BACKOFF_MAX_MS = 10000;
  const CONNECT_TIMEOUT_MS = 10000;
  const OFFER_HOLD_MS = 60000; // an accepted offer never started is dropped after this
  const KEEP_FINISHED = 50; // acknowledged journal entries kept for reprints
  const RECEIPT_WIDTH = 30;
  const LOG_MAX = 300;
  const PRINTER_COLUMNS = 32; // characters a slip's line holds in normal size
  const SLIPS_KEPT = 10; // printed slips left hanging out of the printer
  // The fallback screen size for hello when the page is not laid out (a hidden tab).
  const SCREEN_FALLBACK = { width: 352, height: 224 };

  // Declared in hello: without them the cloud sends only SmartConnect's functions, in AUD, and
  // no terminal action.
  const CAPABILITIES = [
    'refund.referenced', 'void', 'tip_adjust', 'top_up', 'release', 'currency',
    'display', 'input', 'signature', 'printer', 'qr_display', 'config',
  ];
  // What a device runs with before the cloud sends any configuration (protocol::config's
  // Settings::default).
  const DEFAULT_SETTINGS = Object.freeze({
    tipping: false,
    tip_presets: [10, 15, 20],
    surcharges: [],
    receipt_header: '',
    receipt_footer: '',
    currency: 'AUD',
    language: 'en',
    card_timeout_secs: 60,
    input_timeout_secs: 60,
    idle_text: '',
  });
  // A profile's limits (protocol/src/config.rs): settings beyond them are neither applied nor
  // acknowledged, as the reference agent does.
  const MAX_TIP_PRESETS = 6;
  const MAX_SURCHARGE_RULES = 20;
  const MAX_SURCHARGE_BPS = 1000;
  const MAX_RECEIPT_TEXT = 400;
  const MAX_IDLE_TEXT = 120;
  const CONFIG_TIMEOUT_SECS = [5, 600];
  const ANY_CARD = '*';
  const MAX_CONFIGURED_LINES = 8; // lines of the receipt header or footer printed
  const MAX_RECEIPT_LINE = 120; // longest header or footer line of a structured copy
  // Terminal actions: they move no money, so their results carry no transaction_result.
  const ACTIONS = new Set(['Terminal.Input', 'Terminal.Print', 'Terminal.ShowQr']);
  const FINANCIAL = new Set([
    'Card.Purchase', 'Card.Refund', 'Card.PurchasePlusCash', 'Card.CashAdvance',
    'Card.Authorise', 'Card.Finalise', 'QR.Merchant.Purchase', 'QR.Consumer.Purchase', 'QR.Refund',
    'Card.Void', 'Card.TipAdjust', 'Card.TopUp', 'Card.Release',
  ]);
  // Follow-ups that exist only by reference: their amount is the original's, or their own field.
  const FOLLOW_UPS = new Set(['Card.Void', 'Card.TipAdjust', 'Card.TopUp', 'Card.Release']);
  // What an approved transaction counts as in a settlement batch (protocol::settlement::settles):
  // a pre-authorisation only holds funds; a void and a tip adjustment change their original.
  const SETTLES = {
    'Card.Purchase': 'purchase', 'Card.PurchasePlusCash': 'purchase', 'Card.CashAdvance': 'purchase',
    'Card.Finalise': 'purchase', 'QR.Merchant.Purchase': 'purchase', 'QR.Consumer.Purchase': 'purchase',
    'Card.Refund': 'refund', 'QR.Refund': 'refund',
  };
  const LABELS = {
    'Card.Purchase': 'PURCHASE',
    'Card.Refund': 'REFUND',
    'Card.PurchasePlusCash': 'PURCHASE + CASH',
    'Card.CashAdvance': 'CASH ADVANCE',
    'Card.Authorise': 'PRE-AUTHORISATION',
    'Card.Finalise': 'COMPLETION',
    'QR.Merchant.Purchase': 'QR PURCHASE',
    'QR.Consumer.Purchase': 'QR PURCHASE',
    'QR.Refund': 'QR REFUND',
    'Acquirer.Logon': 'LOGON',
    'Acquirer.Settlement.Inquiry': 'SETTLEMENT INQUIRY',
    'Acquirer.Settlement.Cutover': 'SETTLEMENT CUTOVER',
    'Journal.ReprintReceipt': 'REPRINT',
    'Journal.GetTransResult': 'LAST RESULT',
    'Terminal.GetStatus': 'STATUS',
    'Terminal.ReadCard': 'READ CARD',
    'Card.Void': 'VOID',
    'Card.TipAdjust': 'TIP ADJUSTMENT',
    'Card.TopUp': 'PRE-AUTH TOP-UP',
    'Card.Release': 'PRE-AUTH RELEASE',
    'Terminal.Input': 'INPUT',
    'Terminal.Print': 'PRINT',
    'Terminal.ShowQr': 'QR CODE',
  };
  // ISO 4217 exponents, as the cloud counts them (protocol/src/currency.rs); every other code
  // has 2. Not Intl's digits: CLDR shows HUF, IQD, RSD and others with none, which would put the
  // point where neither the cloud nor the receipts of other terminals put it.
  const NO_MINOR_UNITS = new Set([
    'BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'VND', 'VUV',
    'XAF', 'XOF', 'XPF',
  ]);
  const THREE_MINOR_UNITS = new Set(['BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND']);
  const TIP_FUNCTIONS = new Set([
    'Card.Purchase', 'Card.PurchasePlusCash', 'QR.Merchant.Purchase', 'QR.Consumer.Purchase',
  ]);
  const CARDS = [
    { type: 'VISA', pan: '....0138', account: 'CREDIT' },
    { type: 'MASTERCARD', pan: '....4444', account: 'CREDIT' },
    { type: 'EFTPOS', pan: '....7021', account: 'SAVINGS' },
    { type: 'AMEX', pan: '....1005', account: 'CREDIT' },
  ];
  const WALLETS = ['ALIPAY', 'WECHAT PAY'];

  // ---- state ---------------------------------------------------------------------------------
  // Whether this page may create its own device; a 403 from the cloud turns it off.
  let vtEnabled = document.body.dataset.virtualTerminals === 'true';
  let creds = null; // {deviceId, secret}
  let ws = null;
  let welcomed = false;
  let heartbeatMs = 10000;
  let lastHeard = 0;
  let backoffMs = BACKOFF_MIN_MS;
  let reconnectTimer = null;
  let reconnectAt = 0;
  let plugged = true;
  let halted = null; // a reason not to reconnect by itself (replaced by another tab)
  let registers = [];
  let pairing = null; // {code, issuedAt, expiresAt}
  let pairingWanted = false;
  let refreshTimer = null;
  // A follow-up's card is known from the start: its original's.
  // tipStep: 'asking' while the customer chooses a tip preset, then 'chosen'.
  let current = null; // {offer, phase: 'accepted'|'started', acceptedAt, card, tip, tipStep, signature, prompt}
  let shown = null; // the last finished transaction on screen: {offer, result, delivered}
  let notice = '';
  // The customer display between payments: the last `display` frame's version and cart.
  let display = { version: null, cart: null };
  let paperOut = false; // the printer's "Paper out" switch
  let slips = []; // printed slips, newest first: [{id, lines, at}]
  // The cloud's configuration: what runs ({version: null} before any), and the newest frame
  // that waits for the transaction in progress to end.
  let config = { version: null, settings: DEFAULT_SETTINGS };
  let pendingConfig = null;

  // ---- small helpers ---------------------------------------------------------------------------
  const pad2 = (n) => String(n).padStart(2, '0');
  // The request's currency; absent means the configured one (AUD, SmartConnect's, by default).
  function currencyOf(offer) { return (offer && offer.currency) || config.settings.currency || 'AUD'; }
  function minorUnits(code) {
    if (NO_MINOR_UNITS.has(code)) return 0;
    return THREE_MINOR_UNITS.has(code) ? 3 : 2;
  }
  // Minor units as a decimal in `code`: 1234 is 12.34 in AUD, 1234 in JPY, 1.234 in KWD.
  function decimal(minor, code) {
    const m = Math.max(0, Math.trunc(minor || 0));
    const digits = minorUnits(code);
    if (!digits) return String(m);
    const scale = 10 ** digits;
    return `${Math.floor(m / scale)}.${String(m % scale).padStart(digits, '0')}`;
  }
  function money(minor, code) { return `${code} ${decimal(minor, code)}`; }
  // Two and a half of the currency's units, or 250 of one without minor units.
  function tipExample(code) { return decimal(250 * 10 ** Math.max(0, minorUnits(code) - 2), code); }
  function timestamp(d = new Date()) {
    return `${d.getFullYear()}${pad2(d.getMonth() + 1)}${pad2(d.getDate())}` +
      `${pad2(d.getHours())}${pad2(d.getMinutes())}${pad2(d.getSeconds())}`;
  }
  function receiptTime(ts) {
    return `${ts.slice(6, 8)}/${ts.slice(4, 6)}/${ts.slice(0, 4)} ${ts.slice(8, 10)}:${ts.slice(10, 12)}`;
  }
  function randomDigits(n) {
    const bytes = new Uint8Array(n);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => String(b % 10)).join('');
  }
  function pick(list) {
    const b = new Uint8Array(1);
    crypto.getRandomValues(b);
    return list[b[0] % list.length];
  }
  function sameRegister(a, b) {
    return a.register_id === b.register_id && a.business_name === b.business_name &&
      a.vendor_name === b.vendor_name;
  }
  function amountOf(offer) {
    return offer.amount_total ?? offer.amount_auth ?? offer.amount_final ?? null;
  }
  // What the card is charged, refunded or released by this request (before a tip entered on
  // the terminal); null for none.
  function headlineAmount(offer) {
    const o = offer.original;
    switch (offer.function) {
      case 'Card.Void': case 'Card.Release': return o ? o.amount : null;
      // The original's amount is as approved, before any tip; the new tip replaces the old.
      case 'Card.TipAdjust': return o ? o.amount + (offer.amount_tip || 0) : null;
      default: return amountOf(offer);
    }
  }
  const isQr = (f) => f.startsWith('QR.');
  const isRefund = (f) => f === 'Card.Refund' || f === 'QR.Refund';
  // A completion charges its authorisation's card and a follow-up its original's: nobody
  // presents one.
  function needsCard(offer) {
    const f = offer.function;
    if (offer.original || FOLLOW_UPS.has(f) || f === 'Card.Finalise') return false;
    return FINANCIAL.has(f) || f === 'Terminal.ReadCard';
  }
  // The original's card as its result named it (a wallet has a type and no PAN).
  function cardOnFile(offer) {
    const fields = (offer.original && offer.original.fields) || {};
    if (!fields.CardType) return null;
    return { type: fields.CardType, pan: fields.CardPan || null, account: fields.AccountType || null };
  }
  // What the screen and the progress say the request is: "REFUND of AUD 10.00 — AUD 6.00".
  function headline(offer) {
    const f = offer.function;
    const code = currencyOf(offer);
    const label = LABELS[f] || f;
    const o = offer.original;
    if (f === 'Card.TipAdjust') return `${label} new tip ${money(offer.amount_tip, code)}`;
    if (o && !FOLLOW_UPS.has(f)) return `${label} of ${money(o.amount, code)} — ${money(amountOf(offer), code)}`;
    const amount = headlineAmount(offer);
    return amount !== null ? `${label} ${money(amount, code)}` : label;
  }
  function cardText(card) {
    return [card.type, card.pan, card.account].filter(Boolean).join(' ');
  }

  // ---- the journal (localStorage): Started before the card, Completed before the result --------
  function journalKey() { return JOURNAL_PREFIX + creds.deviceId; }
  function loadJournal() {
    const raw = localStorage.getItem(journalKey());
    if (!raw) return [];
    try {
      const j = JSON.parse(raw);
      return Array.isArray(j) ? j : [];
    } catch (e) {
      // Never start empty over a journal that cannot be read: keep it for a person to inspect.
      localStorage.setItem(`${journalKey()}.unreadable.${Date.now()}`, raw);
      logNote(`journal unreadable, set aside: ${e}`);
      return [];
    }
  }
  function saveJournal(j) { localStorage.setItem(journalKey(), JSON.stringify(j)); }
  function journalEntry(id) { return loadJournal().find((e) => e.id === id) || null; }
  function journalStarted(offer) {
    const j = loadJournal();
    if (!j.some((e) => e.id === offer.transaction_id)) {
      j.push({ id: offer.transaction_id, offer, state: 'started', result: null, at: Date.now() });
      saveJournal(j);
    }
  }
  function journalCompleted(id, offer, result) {
    const j = loadJournal();
    let e = j.find((x) => x.id === id);
    if (!e) {
      e = { id, offer, state: 'started', result: null, at: Date.now() };
      j.push(e);
    }
    if (!e.result) { // the first result wins
      e.result = result;
      e.state = 'completed';
    }
    saveJournal(j);
    return e.result;
  }
  function journalAcknowledged(id) {
    const j = loadJournal();
    const e = j.find((x) => x.id === id);
    if (!e || e.state !== 'completed') return false;
    e.state = 'acknowledged';
    const finished = j.filter((x) => x.state === 'acknowledged');
    const drop = new Set(finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED)));
    saveJournal(j.filter((x) => !drop.has(x)));
    return true;
  }
  function unacknowledged() {
    return loadJournal().filter((e) => e.state === 'completed' && e.result).map((e) => e.result);
  }
  function nextTerminalRef() {
    const key = STAN_PREFIX + creds.deviceId;
    const n = ((parseInt(localStorage.getItem(key) || '0', 10) || 0) + 1) % 1000000;
    localStorage.setItem(key, String(n));
    return String(n).padStart(6, '0');
  }
  // A reload is this terminal's power cut: a transaction journaled as started may have touched
  // a card, so it is reversed and reported, as the reference agent does at start-up.
  function recoverJournal() {
    for (const e of loadJournal()) {
      if (e.state !== 'started') continue;
      if (e.offer && ACTIONS.has(e.offer.function)) {
        journalCompleted(e.id, e.offer, interruptedAction(e.offer));
        logNote(`${e.offer.function} ${e.id} was running when the page closed: reported as interrupted`);
        continue;
      }
      const fin = e.offer && FINANCIAL.has(e.offer.function);
      const result = {
        transaction_id: e.id,
        result: 'CANCELLED',
        result_text: 'Transaction reversed after power failure',
        fields: { Reversed: 'true', Timestamp: timestamp() },
      };
      if (fin || !e.offer) result.transaction_result = 'CANCELLED';
      journalCompleted(e.id, e.offer, result);
      logNote(`transaction ${e.id} was running when the page closed: reversed`);
    }
  }

  // ---- the cloud's configuration (localStorage beside the journal) ------------------------------
  function configKey() { return CONFIG_PREFIX + creds.deviceId; }
  const isInt = (v, lo, hi) => Number.isSafeInteger(v) && v >= lo && v <= hi;
  // `text` within `max` characters, with no control character but line breaks when allowed.
  function goodText(text, max, lines) {
    if (typeof text !== 'string' || Array.from(text).length > max) return false;
    return !(lines ? CONTROL_BUT_NEWLINE : CONTROL).test(text);
  }
  // Why `s` is not settings this page can run with (Profile::check's rules), or null.
  function settingsProblem(s) {
    if (!s || typeof s !== 'object' || Array.isArray(s)) return 'no settings';
    if (typeof s.tipping !== 'boolean') return 'tipping is not true or false';
    const presets = s.tip_presets;
    if (!Array.isArray(presets) || !presets.length || presets.length > MAX_TIP_PRESETS ||
        presets.some((p) => !isInt(p, 1, 100)) || new Set(presets).size !== presets.length) {
      return `tip_presets must hold 1 to ${MAX_TIP_PRESETS} distinct percentages from 1 to 100`;
    }
    const rules = s.surcharges;
    if (!Array.isArray(rules) || rules.length > MAX_SURCHARGE_RULES) return 'too many surcharge rules';
    const cards = new Set();
    for (const r of rules) {
      if (!r || typeof r.card !== 'string' || !(r.card === ANY_CARD || /^[A-Z0-9_]{1,20}$/.test(r.card))) {
        return 'a surcharge rule names no card type';
      }
      if (cards.has(r.card)) return `card type ${r.card} has two surcharge rules`;
      cards.add(r.card);
      if (!isInt(r.bps, 1, MAX_SURCHARGE_BPS)) return `surcharge bps must be 1 to ${MAX_SURCHARGE_BPS}`;
      if (r.cap != null && !isInt(r.cap, 0, Number.MAX_SAFE_INTEGER)) return 'a surcharge cap is not an amount';
    }
    if (!goodText(s.receipt_header, MAX_RECEIPT_TEXT, true)) return 'receipt_header is too long';
    if (!goodText(s.receipt_footer, MAX_RECEIPT_TEXT, true)) return 'receipt_footer is too long';
    if (!goodText(s.idle_text, MAX_IDLE_TEXT, false)) return 'idle_text is too long';
    if (typeof s.currency !== 'string' || !/^[A-Z]{3}$/.test(s.currency)) return 'currency is not an ISO code';
    if (typeof s.language !== 'string' || !/^[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}))?$/.test(s.language)) {
      return 'language is not a language tag';
    }
    const [lo, hi] = CONFIG_TIMEOUT_SECS;
    if (!isInt(s.card_timeout_secs, lo, hi) || !isInt(s.input_timeout_secs, lo, hi)) {
      return `timeouts must be ${lo} to ${hi} seconds`;
    }
    return null;
  }
  // The settings the page ran with before it closed, or the defaults.
  function loadConfig() {
    const raw = localStorage.getItem(configKey());
    if (!raw) return { version: null, settings: DEFAULT_SETTINGS };
    try {
      const c = JSON.parse(raw);
      const problem = settingsProblem(c && c.settings);
      if (!c || !Number.isSafeInteger(c.version) || problem) throw new Error(problem || 'no version');
      return { version: c.version, settings: c.settings };
    } catch (e) {
      // Kept for a person to inspect, as an unreadable journal is.
      localStorage.setItem(`${configKey()}.unreadable.${Date.now()}`, raw);
      logNote(`configuration unreadable, set aside (running the defaults): ${e.message || e}`);
      return { version: null, settings: DEFAULT_SETTINGS };
    }
  }
  // A `config` frame: applied at once when idle, after the transaction offered or running
  // otherwise (only the newest waits); a version not newer than the applied one is
  // acknowledged again, not applied again.
  function onConfig(msg) {
    const version = Number(msg.version);
    if (!Number.isSafeInteger(version) || version < 0) {
      logNote('config frame without a version: ignored');
      return;
    }
    if (config.version !== null && version <= config.version) {
      send({ type: 'config_ack', version });
      return;
    }
    const problem = settingsProblem(msg.settings);
    if (problem) {
      logNote(`config ${version} beyond this terminal's limits (${problem}): not applied`);
      return;
    }
    const next = { version, settings: msg.settings };
    if (current) {
      if (!pendingConfig || version > pendingConfig.version) pendingConfig = next;
      logNote(`config ${version} received during a transaction: applied when it ends`);
      render();
      return;
    }
    applyConfig(next);
  }
  // Keeps `c`, runs it and acknowledges it; one that cannot be kept is neither run nor
  // acknowledged (the cloud sends it again on the next connection).
  function applyConfig(c) {
    try {
      localStorage.setItem(configKey(), JSON.stringify(c));
    } catch (e) {
      logNote(`cannot keep config ${c.version}: ${e}; not applied`);
      return;
    }
    config = c;
    logNote(`config ${c.version} applied`);
    send({ type: 'config_ack', version: c.version });
    render();
  }
  // Nothing is in progress any more: the configuration that waited runs now.
  function applyPendingConfig() {
    if (current || !pendingConfig) return;
    const c = pendingConfig;
    pendingConfig = null;
    if (config.version !== null && c.version <= config.version) send({ type: 'config_ack', version: c.version });
    else applyConfig(c);
  }

  // `percent` % of `minor`, rounded half up to the cent.
  function percentOf(minor, percent) {
    return Number((BigInt(minor) * BigInt(percent) + 50n) / 100n);
  }
  // The surcharge rule of `cardType` (a result's CardType): its own, else the `*` rule.
  function surchargeRule(cardType) {
    const rules = config.settings.surcharges;
    const type = String(cardType || '').toUpperCase();
    return rules.find((r) => r.card.toUpperCase() === type) || rules.find((r) => r.card === ANY_CARD) || null;
  }
  // SurchargeRule::on: bps basis points of `minor`, rounded half up, at most the cap.
  function surchargeOn(rule, minor) {
    const raw = Number((BigInt(minor) * BigInt(rule.bps) + 5000n) / 10000n);
    return rule.cap != null ? Math.min(raw, rule.cap) : raw;
  }
  // The configured receipt header's or footer's lines, at most MAX_CONFIGURED_LINES, trimmed.
  function configuredLines(text) {
    if (!text) return [];
    const lines = text.split('\n');
    if (text.endsWith('\n')) lines.pop(); // as Rust's lines(): no empty line after the last break
    return lines.slice(0, MAX_CONFIGURED_LINES).map((l) => l.trim());
  }
  // `text` in pieces of at most `width` characters, cut at spaces where it can.
  function wrap(text, width) {
    const out = [];
    let line = [];
    for (const w of text.split(' ')) {
      let word = Array.from(w);
      for (;;) {
        const sep = line.length ? 1 : 0;
        if (line.length + sep + word.length <= width) {
          if (sep) line.push(' ');
          line.push(...word);
          break;
        }
        if (line.length) {
          out.push(line.join(''));
          line = [];
          continue;
        }
        // A word longer than a line is cut.
        out.push(word.slice(0, width).join(''));
        word = word.slice(width);
      }
    }
    if (line.length) out.push(line.join(''));
    return out;
  }

  // ---- the connection ------------------------------------------------------------------------
  function deviceUrl() {
    const url = new URL('/device/v1', window.location.href);
    url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.toString();
  }

  function setConnection(state, text) {
    document.body.dataset.connection = state;
    $('connection-status').textContent = text;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (!creds || !plugged || halted || ws) return;
    setConnection('connecting', 'Connecting…');
    let sock;
    try {
      sock = new WebSocket(deviceUrl());
    } catch (e) {
      logNote(`cannot open the connection: ${e}`);
      scheduleReconnect();
      return;
    }
    ws = sock;
    welcomed = false;
    const giveUp = setTimeout(() => {
      if (ws === sock && !welcomed) drop('no welcome in time');
    }, CONNECT_TIMEOUT_MS);
    sock.onopen = () => {
      if (ws !== sock) return;
      lastHeard = Date.now();
      const running = current && current.phase === 'started' ? current.offer.transaction_id : undefined;
      const hello = {
        type: 'hello',
        protocol_version: PROTOCOL_VERSION,
        device_id: creds.deviceId,
        secret: creds.secret,
        vendor: 'eftcloud',
        model: 'virtual',
        agent_version: AGENT_VERSION,
        capabilities: CAPABILITIES,
        hardware: { screen: screenSize(), printer_columns: PRINTER_COLUMNS },
        unacknowledged: unacknowledged(),
      };
      if (running) hello.in_progress = running;
      // The settings it runs: the cloud sends them again when they are not its own (storage
      // cleared, or another browser's).
      if (config.version !== null) hello.config_version = config.version;
      sock.send(JSON.stringify(hello));
      logMessage('out', { ...hello, secret: '•••' });
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        logNote(`unreadable frame from the cloud: ${e}`);
        return;
      }
      logMessage('in', msg);
      handle(msg);
    };
    sock.onclose = (ev) => {
      clearTimeout(giveUp);
      if (ws !== sock) return;
      ws = null;
      welcomed = false;
      closed(ev.code, ev.reason);
    };
  }

  // The customer-facing screen as laid out now, in CSS pixels.
  function screenSize() {
    const r = $('screen').getBoundingClientRect();
    const width = Math.round(r.width);
    const height = Math.round(r.height);
    return width > 0 && height > 0 ? { width, height } : SCREEN_FALLBACK;
  }

  // Drops the connection at once (watchdog, unplug); the close handshake may never finish.
  function drop(reason, code = 1000) {
    const sock = ws;
    if (!sock) return;
    ws = null;
    welcomed = false;
    try { sock.close(code, reason); } catch (_) { /* already closing */ }
    logNote(`connection dropped: ${reason}`);
    closed(null, reason);
  }

  function closed(code, reason) {
    if (code !== null) logNote(`connection closed: ${code}${reason ? ` ${reason}` : ''}`);
    if (!plugged) {
      setConnection('unplugged', 'Unplugged');
      render();
      return;
    }
    if (code === 4003) {
      halted = 'Another tab or terminal took over this device id. Reconnect to take it back.';
      setConnection('error', 'Replaced');
      render();
      return;
    }
    // Retrying fast will not help these: back off to the maximum.
    if (code === 4000 || code === 4001 || code === 4005 || code === 4029) backoffMs = BACKOFF_MAX_MS;
    if (code === 4001) {
      notice = 'Authentication failed: unknown device or wrong secret (a virtual terminal unused '
        + 'for a while is removed: forget it and create a new one).';
    }
    if (code === 4029) notice = `Cloud: ${reason || 'too many refused connections from this address'}`;
    scheduleReconnect();
    render();
  }

  function scheduleReconnect() {
    const step = backoffMs;
    const delay = Math.max(BACKOFF_MIN_MS, step / 2 + Math.random() * (step / 2));
    backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
    reconnectAt = Date.now() + delay;
    setConnection(notice.startsWith('Authentication') ? 'error' : 'connecting',
      `Offline, retrying in ${Math.ceil(delay / 1000)} s`);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  function send(msg) {
    if (!ws || !welcomed || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    logMessage('out', msg);
    return true;
  }

  // The cloud pings every heartbeat; three silent intervals mean a dead link.
  setInterval(() => {
    if (ws && welcomed && Date.now() - lastHeard > 3 * heartbeatMs) drop('the cloud went silent');
  }, 1000);

  // ---- frames from the cloud -----------------------------------------------------------------
  function handle(msg) {
    switch (msg.type) {
      case 'welcome': return onWelcome(msg);
      case 'ping': return send({ type: 'pong', nonce: msg.nonce });
      case 'pairing_code': return onPairingCode(msg);
      case 'paired': return onPaired(msg.register);
      case 'unpaired': return onUnpaired(msg.registers || []);
      case 'transaction': return onTransaction(msg);
      case 'start': return onStart(msg.transaction_id);
      case 'abort': return onAbort(msg.transaction_id, msg.reason);
      case 'cancel': return onCancel(msg.transaction_id);
      case 'result_ack': return onResultAck(msg.transaction_id);
      case 'display': return onDisplay(msg);
      case 'config': return onConfig(msg);
      case 'error':
        notice = `Cloud: ${msg.message}`;
        return render();
      default: return undefined; // unknown frames are ignored
    }
  }

  function onWelcome(msg) {
    welcomed = true;
    backoffMs = BACKOFF_MIN_MS;
    notice = '';
    heartbeatMs = Math.min(86400000, Math.max(10, Number(msg.heartbeat_ms) || 10000));
    registers = Array.isArray(msg.registers) ? msg.registers : [];
    setConnection('online', 'Online');
    if (registers.length === 0 || pairingWanted) requestCode();
    render();
  }

  function requestCode() {
    pairingWanted = true;
    clearTimeout(refreshTimer);
    if (!send({ type: 'pairing_code_request' })) render();
  }

  function onPairingCode(msg) {
    const ttl = Math.max(1000, Number(msg.expires_in_ms) || 120000);
    pairing = { code: String(msg.code), issuedAt: Date.now(), expiresAt: Date.now() + ttl };
    clearTimeout(refreshTimer);
    // Refresh at 80 % of the lifetime so the screen never shows a dead code.
    refreshTimer = setTimeout(() => { if (pairingWanted) requestCode(); }, ttl * 0.8);
    render();
  }

  function stopPairing() {
    pairingWanted = false;
    pairing = null;
    clearTimeout(refreshTimer);
  }

  function onPaired(register) {
    if (!register) return;
    const i = registers.findIndex((r) => sameRegister(r, register));
    if (i >= 0) registers[i] = register; else registers.push(register);
    stopPairing();
    render();
  }

  function onUnpaired(keys) {
    registers = registers.filter((r) => !keys.some((k) => sameRegister(r, k)));
    if (registers.length === 0) requestCode();
    render();
  }

  function onTransaction(offer) {
    const id = offer.transaction_id;
    const entry = journalEntry(id);
    if (entry) {
      // Running: the result will follow. Finished: answer with the journaled result again.
      if (entry.result) send({ type: 'result', ...entry.result });
      return;
    }
    if (current) {
      if (current.offer.transaction_id === id) {
        if (current.phase === 'accepted') send({ type: 'accept', transaction_id: id });
        return;
      }
      const stale = current.phase === 'accepted' && Date.now() - current.acceptedAt > OFFER_HOLD_MS;
      if (!stale) {
        logNote(`busy: offer ${id} not accepted`);
        return;
      }
      current = null;
      // Between the dropped offer and this one: the moment for a configuration that waited.
      applyPendingConfig();
    }
    current = {
      offer, phase: 'accepted', acceptedAt: Date.now(), card: cardOnFile(offer), tip: 0, tipStep: null,
      signature: null, prompt: 'Waiting for the cloud to start it…', action: null,
    };
    shown = null;
    notice = '';
    $('tip-amount').value = '';
    $('tip-amount').placeholder = tipExample(currencyOf(offer));
    $('tip-currency').textContent = currencyOf(offer);
    send({ type: 'accept', transaction_id: id });
    render();
  }

  function onStart(id) {
    const entry = journalEntry(id);
    if (entry) {
      if (entry.result) send({ type: 'result', ...entry.result });
      return;
    }
    if (current && current.offer.transaction_id === id && current.phase === 'accepted') {
      try {
        journalStarted(current.offer);
      } catch (e) {
        // Nothing touched a card: a definite, safe answer.
        const offer = current.offer;
        current = null;
        const result = outcome(offer, 'FAILED', 'FAILED', 'Device journal unavailable; nothing was charged',
          { Timestamp: timestamp() });
        shown = { offer, result, delivered: false };
        send({ type: 'result', ...result });
        applyPendingConfig();
        render();
        return;
      }
      current.phase = 'started';
      const o = current.offer;
      const f = o.function;
      if (ACTIONS.has(f)) {
        startAction();
        return;
      }
      const head = headline(o);
      if (f === 'QR.Merchant.Purchase') prompt('show_qr', `${head}\nScan the QR code`);
      else if (f === 'QR.Consumer.Purchase' || f === 'QR.Refund') prompt('scan_qr', `${head}\nShow your QR code`);
      else if (asksTip(o)) askTip();
      else if (needsCard(o)) prompt('present_card', `${head}\nPresent card`);
      else if (current.card && o.original) prompt('processing', `${head}\n${cardText(current.card)}`);
      else prompt('processing', `${head}\nProcessing`);
      render();
      return;
    }
    // Never accepted, or forgotten after abort/cancel: nothing touched a card.
    const result = {
      transaction_id: id,
      transaction_result: 'CANCELLED',
      result: 'CANCELLED',
      result_text: 'Not accepted by the device; nothing was charged',
      fields: { Timestamp: timestamp() },
    };
    send({ type: 'result', ...journalCompleted(id, null, result) });
  }

  function onAbort(id, reason) {
    if (current && current.offer.transaction_id === id && current.phase === 'accepted') {
      current = null;
      notice = `Aborted by the cloud: ${reason || 'no reason given'}`;
      applyPendingConfig();
      render();
    }
  }

  function onCancel(id) {
    if (!current || current.offer.transaction_id !== id) return;
    if (current.phase === 'accepted') {
      current = null;
      notice = 'Cancelled by the POS before it started';
      applyPendingConfig();
      render();
      return;
    }
    if (ACTIONS.has(current.offer.function)) {
      endAction(actionCancelled(cancelReason.POS));
      return;
    }
    // Nothing is charged before Approve, so a cancel always stops it here.
    finish('pos-cancel');
  }

  function onResultAck(id) {
    journalAcknowledged(id);
    if (shown && shown.result.transaction_id === id) {
      shown.delivered = true;
      render();
    }
  }

  // ---- what the clerk and the customer do --------------------------------------------------------
  function prompt(name, text) {
    if (!current) return;
    current.prompt = text;
    // Progress while offline is stale by the time the link is back: dropped, not queued.
    send({ type: 'progress', transaction_id: current.offer.transaction_id, prompt: name, text });
  }

  function presentCard() {
    if (!running() || askingTip()) return;
    const f = current.offer.function;
    current.card = isQr(f) ? { type: pick(WALLETS), pan: null, account: null } : pick(CARDS);
    if (isQr(f)) prompt('processing', `${current.card.type}\nProcessing`);
    else if (FINANCIAL.has(f)) prompt('enter_pin', `${current.card.type} ${current.card.pan}\nEnter PIN`);
    else prompt('processing', `${current.card.type} ${current.card.pan}\nReading card`);
    render();
  }

  // With tipping configured, a purchase whose request carries no tip asks the customer first.
  function asksTip(offer) {
    const s = config.settings;
    return offer.function === 'Card.Purchase' && s.tipping && offer.amount_tip == null &&
      s.tip_presets.length > 0;
  }
  function askTip() {
    const o = current.offer;
    const code = currencyOf(o);
    const amount = amountOf(o) || 0;
    current.tipStep = 'asking';
    const choice = (percent, label) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'key choice tip-choice';
      b.dataset.percent = String(percent);
      b.textContent = label;
      b.addEventListener('click', () => chooseTip(percent));
      return b;
    };
    $('tip-choices').replaceChildren(
      ...config.settings.tip_presets.map((p) => choice(p, `${p}% · ${money(percentOf(amount, p), code)}`)),
      choice(0, 'No tip'),
    );
    prompt('tip', `${headline(o)}\nAdd a tip?`);
  }
  // The customer's choice: a preset's percentage of the amount, rounded half up, or none.
  function chooseTip(percent) {
    if (!running() || current.tipStep !== 'asking') return;
    const o = current.offer;
    const code = currencyOf(o);
    const amount = amountOf(o) || 0;
    current.tip = percent ? percentOf(amount, percent) : 0;
    current.tipStep = 'chosen';
    const tipped = current.tip ? `\nTip ${money(current.tip, code)} · Total ${money(amount + current.tip, code)}` : '';
    prompt('present_card', `${headline(o)}${tipped}\nPresent card`);
    render();
  }
  const askingTip = () => !!(current && current.tipStep === 'asking');

  function enterTip() {
    if (!running() || !TIP_FUNCTIONS.has(current.offer.function) || askingTip()) return;
    const input = $('tip-amount');
    const code = currencyOf(current.offer);
    const digits = minorUnits(code);
    const text = input.value.trim().replace(/^\$/, '');
    const shape = digits ? new RegExp(`^\\d{1,6}(\\.\\d{1,${digits}})?$`) : /^\d{1,8}$/;
    if (!shape.test(text)) {
      notice = `Tip: enter an amount like ${tipExample(code)}`;
      render();
      input.focus();
      return;
    }
    const [whole, frac = ''] = text.split('.');
    current.tip = parseInt(whole, 10) * 10 ** digits + (digits ? parseInt(frac.padEnd(digits, '0'), 10) : 0);
    notice = '';
    const total = (amountOf(current.offer) || 0) + current.tip +
      surchargeOf(current.offer, current.card, current.tip);
    prompt('enter_tip', `Tip ${money(current.tip, code)}\nTotal ${money(total, code)}`);
    render();
  }

  function signatureRequired() {
    if (!running()) return;
    current.signature = 'required';
    prompt('signature_required', 'Signature required\nClerk: check the signature');
    render();
  }

  function signatureAccepted() {
    if (!running() || current.signature !== 'required') return;
    current.signature = 'accepted';
    prompt('processing', 'Signature accepted\nProcessing');
    render();
  }

  function running() { return current && current.phase === 'started'; }

  function finish(kind) {
    if (!running()) return;
    if (ACTIONS.has(current.offer.function)) {
      // The device's own Cancel key is the customer's, on an input or a QR code.
      if (kind === 'cancel' && current.action && current.action.kind !== 'print') {
        endAction(actionCancelled(cancelReason.CUSTOMER));
      }
      return;
    }
    const c = current;
    if (kind === 'approve') prompt('processing', 'Processing');
    complete(c, buildResult(kind, c));
  }

  // The result of the running transaction: journaled, shown, sent (or kept for the next hello).
  function complete(c, result) {
    let stored = result;
    try {
      stored = journalCompleted(c.offer.transaction_id, c.offer, result);
    } catch (e) {
      logNote(`journal write failed: ${e}`);
    }
    current = null;
    shown = { offer: c.offer, result: stored, delivered: false };
    if (!send({ type: 'result', ...stored })) {
      logNote('offline: the result stays in the journal and goes with the next hello');
    }
    applyPendingConfig();
    render();
  }

  // ---- terminal actions: the customer's input, the printer, a QR code --------------------------
  const cancelReason = { CUSTOMER: 'customer', TIMEOUT: 'timeout', POS: 'pos' };
  const CANCEL_TEXT = {
    customer: 'Cancelled by the customer',
    timeout: 'Timed out',
    pos: 'Cancelled by the POS',
  };
  const DEFAULT_TIMEOUT_SECS = 60;

  function actionResult(result, text, fields) {
    return {
      transaction_id: current.offer.transaction_id,
      result,
      result_text: text,
      fields: { Timestamp: timestamp(), ...fields },
    };
  }
  function actionCancelled(reason) {
    return actionResult('CANCELLED', CANCEL_TEXT[reason], { CancelReason: reason });
  }
  // A reload is a power cut: an input or a QR code has no answer to give, and a slip may be
  // half printed, so neither is repeated.
  function interruptedAction(offer) {
    const r = { transaction_id: offer.transaction_id, fields: { Timestamp: timestamp() } };
    if (offer.function === 'Terminal.Print') {
      r.fields.PrinterStatus = 'ERROR';
      return { ...r, result: 'FAILED', result_text: 'Printing interrupted: the terminal restarted' };
    }
    return { ...r, result: 'CANCELLED', result_text: 'Interrupted: the terminal restarted' };
  }

  function endAction(result) {
    if (!running() || !current.action) return;
    complete(current, result);
  }

  function startAction() {
    const o = current.offer;
    if (o.function === 'Terminal.Input') startInput(o.input);
    else if (o.function === 'Terminal.Print') startPrint(o.print);
    else startQr(o.qr);
  }

  // A request's timeout, else `fallback` seconds (an input's is the configured one).
  function timeoutOf(request, fallback = DEFAULT_TIMEOUT_SECS) {
    const secs = Number(request && request.timeout_secs) || fallback;
    return Math.max(1, secs) * 1000;
  }

  // The checks of InputRequest::check_value (protocol/src/action.rs), run as the customer
  // types: the same rules with the same messages, so the cloud never refuses an answer this
  // page sends. Lengths count characters (code points), as Rust's chars() does.
  const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
  const CONTROL_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
  // Rust's char::is_whitespace (Unicode White_Space), not JavaScript's \s.
  const WHITESPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
  const LEADING_WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
  const MAX_TEXT_LENGTH = 1000;
  const MAX_EMAIL_LENGTH = 254;
  const MAX_SIGNATURE_BYTES = 32 * 1024;

  function isEmail(s) {
    const at = s.indexOf('@');
    if (at < 0) return false;
    const local = s.slice(0, at);
    const domain = s.slice(at + 1);
    return local.length > 0 && !domain.includes('@') && domain.includes('.') &&
      !domain.startsWith('.') && !domain.endsWith('.') && !WHITESPACE.test(s) && !CONTROL.test(s);
  }
  // A number with at most `decimals` digits after the point, as an integer of 10^decimals
  // units (BigInt: 18 digits and 6 decimals are past a double's precision); null if it is not.
  function parseNumber(s, decimals) {
    const negative = s.startsWith('-');
    const body = negative ? s.slice(1) : s;
    const dot = body.indexOf('.');
    const whole = dot < 0 ? body : body.slice(0, dot);
    const frac = dot < 0 ? '' : body.slice(dot + 1);
    const digits = (p) => /^[0-9]*$/.test(p);
    if (!whole || whole.length > 18 || !digits(whole) || !digits(frac) || frac.length > decimals ||
        (dot >= 0 && !frac)) return null;
    let n = BigInt(whole);
    for (let i = 0; i < decimals; i++) n = n * 10n + BigInt(i < frac.length ? Number(frac[i]) : 0);
    return negative ? -n : n;
  }
  function checkSignature(s) {
    if (new TextEncoder().encode(s).length > MAX_SIGNATURE_BYTES) {
      return `the signature is larger than ${MAX_SIGNATURE_BYTES} bytes`;
    }
    if (!/^[Mm]/.test(s.replace(LEADING_WHITESPACE, ''))) {
      return 'a signature is SVG path data starting with a move (M)';
    }
    if (!/^[MmLlHhVvCcSsQqTtAaZz0-9 ,.-]*$/.test(s)) {
      return 'a signature is SVG path data: the commands M L H V C S Q T A Z and numbers';
    }
    if (!/[LlHhVvCcSsQqTtAa]/.test(s)) return 'the signature is empty: nothing was drawn';
    return null;
  }
  // Why `value` is not an answer to `input`, or null when it is.
  function checkInputValue(input, value) {
    const r = input.rules || {};
    const length = Array.from(value).length;
    const withinLengths = (defaultMax) => {
      const min = Math.max(r.min_length ?? 0, 1);
      const max = r.max_length ?? defaultMax;
      if (length < min) return `the answer needs at least ${min} characters`;
      if (length > max) return `the answer has at most ${max} characters`;
      return null;
    };
    switch (input.kind) {
      case 'signature': return checkSignature(value);
      case 'email': return withinLengths(MAX_EMAIL_LENGTH) || (isEmail(value) ? null : 'not an email address');
      case 'phone':
        return /^\+?[0-9]{6,15}$/.test(value) ? null : 'not a phone number: + and 6 to 15 digits';
      case 'number': {
        const decimals = r.decimals || 0;
        const scaled = parseNumber(value, decimals);
        if (scaled === null) {
          return decimals === 0 ? 'not a whole number' : `not a number with at most ${decimals} decimals`;
        }
        const scale = 10n ** BigInt(decimals);
        if (r.min != null && scaled < BigInt(r.min) * scale) return `the number is below ${r.min}`;
        if (r.max != null && scaled > BigInt(r.max) * scale) return `the number is above ${r.max}`;
        return null;
      }
      case 'text':
        return withinLengths(MAX_TEXT_LENGTH) ||
          (CONTROL_BUT_NEWLINE.test(value) ? 'control characters are not allowed' : null);
      case 'selection': return (input.options || []).includes(value) ? null : 'not one of the options';
      case 'confirmation': return value === 'yes' || value === 'no' ? null : 'a confirmation is yes or no';
      default: return `this terminal cannot answer a ${input.kind} input`;
    }
  }
  const sentence = (s) => (s ? s[0].toUpperCase() + s.slice(1) : '');

  // What the customer is told of the rules before typing.
  function inputHint(input) {
    const r = input.rules || {};
    switch (input.kind) {
      case 'signature': return 'Sign in the box with your finger, a pen or the mouse';
      case 'email': return 'An email address';
      case 'phone': return 'A phone number: digits, + first for an international one';
      case 'number': {
        const parts = [];
        if (r.min != null && r.max != null) parts.push(`from ${r.min} to ${r.max}`);
        else if (r.min != null) parts.push(`at least ${r.min}`);
        else if (r.max != null) parts.push(`at most ${r.max}`);
        parts.push(r.decimals ? `up to ${r.decimals} decimals` : 'a whole number');
        return sentence(parts.join(', '));
      }
      case 'text': {
        const min = r.min_length ?? 1;
        if (r.max_length != null) return `${min} to ${r.max_length} characters`;
        return min > 1 ? `At least ${min} characters` : '';
      }
      case 'selection': return 'Choose one';
      default: return '';
    }
  }

  function startInput(input) {
    if (!input || !input.kind) {
      current.action = { kind: 'input' };
      endAction(actionResult('FAILED', 'No input in the request', {}));
      return;
    }
    const total = timeoutOf(input, config.settings.input_timeout_secs);
    const a = { kind: 'input', input, deadline: Date.now() + total, total, value: '', touched: false, pad: null };
    current.action = a;
    $('input-prompt').textContent = input.prompt || '';
    $('input-hint').textContent = inputHint(input);
    $('input-error').textContent = '';
    $('input-body').replaceChildren();
    $('input-body').dataset.kind = input.kind;
    const answered = input.kind === 'selection' || input.kind === 'confirmation';
    $('input-ok').hidden = answered;
    $('input-clear').hidden = input.kind !== 'signature';
    prompt(input.kind === 'signature' ? 'signature_required' : 'input', input.prompt || '');
    render(); // lays the screen out: the signature pad takes its size from it
    const body = $('input-body');
    if (input.kind === 'signature') buildSignaturePad(a, body);
    else if (input.kind === 'selection') buildChoices(a, body, input.options || []);
    else if (input.kind === 'confirmation') buildChoices(a, body, ['Yes', 'No'], ['yes', 'no']);
    else buildField(a, body);
    renderInputCheck();
    const focus = body.querySelector('input, textarea, button');
    if (focus) focus.focus();
  }

  function buildField(a, body) {
    const kind = a.input.kind;
    const field = document.createElement(kind === 'text' ? 'textarea' : 'input');
    field.id = 'input-field';
    field.className = 'input-field';
    field.setAttribute('aria-labelledby', 'input-prompt');
    field.setAttribute('aria-describedby', 'input-hint input-error');
    field.autocomplete = 'off';
    field.spellcheck = false;
    if (kind === 'text') field.rows = 3;
    else if (kind === 'email') { field.type = 'email'; field.inputMode = 'email'; }
    else if (kind === 'phone') { field.type = 'tel'; field.inputMode = 'tel'; }
    else if (kind === 'number') field.inputMode = (a.input.rules || {}).decimals ? 'decimal' : 'numeric';
    field.addEventListener('input', () => {
      a.value = field.value;
      a.touched = true;
      renderInputCheck();
    });
    // Enter answers; in free text Enter is a new line and Ctrl+Enter answers.
    field.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (kind !== 'text' || ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        submitInput();
      }
    });
    body.append(field);
  }

  // A button per choice: a selection's options (the answer is the option and its position), or
  // Yes and No.
  function buildChoices(a, body, labels, values = labels) {
    const list = document.createElement('div');
    list.className = a.input.kind === 'confirmation' ? 'choices choices-yes-no' : 'choices';
    list.setAttribute('role', 'group');
    list.setAttribute('aria-labelledby', 'input-prompt');
    labels.forEach((label, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'key choice';
      if (a.input.kind === 'confirmation') b.classList.add(i === 0 ? 'key-ok' : 'key-warn');
      b.dataset.index = String(i);
      b.textContent = label;
      b.addEventListener('click', () => answer(values[i], a.input.kind === 'selection' ? i : null));
      list.append(b);
    });
    body.append(list);
  }

  function renderInputCheck() {
    const a = running() && current.action;
    if (!a || a.kind !== 'input') return;
    const err = checkInputValue(a.input, a.value);
    $('input-ok').disabled = !!err;
    $('input-error').textContent = a.touched && err ? sentence(err) : '';
  }

  function answer(value, index) {
    const a = running() && current.action;
    if (!a || a.kind !== 'input') return;
    const err = checkInputValue(a.input, value);
    if (err) {
      a.touched = true;
      $('input-error').textContent = sentence(err);
      return;
    }
    const fields = { InputValue: value };
    if (index !== null) fields.InputIndex = String(index);
    if (a.pad) fields.SignatureViewBox = `0 0 ${a.pad.width} ${a.pad.height}`;
    endAction(actionResult('OK', 'Answered', fields));
  }
  function submitInput() {
    const a = running() && current.action;
    if (a && a.kind === 'input') answer(a.value, null);
  }

  // The signature pad: an SVG the customer draws on with any pointer (mouse, pen, touch); the
  // answer is the very path data it shows, in the pad's CSS pixels.
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svgElement(name, attributes) {
    const e = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, String(v));
    return e;
  }
  function strokesPath(strokes) {
    return strokes.map((s) => {
      const [first, ...rest] = s;
      // A dot is a line to itself: the path must draw something.
      const tail = rest.length ? rest : [first];
      return `M${first[0]} ${first[1]} ${tail.map((p) => `L${p[0]} ${p[1]}`).join(' ')}`;
    }).join(' ');
  }
  function buildSignaturePad(a, body) {
    const svg = svgElement('svg', {
      id: 'signature-pad', class: 'signature-pad', role: 'img',
      'aria-label': 'Signature pad: sign with a finger, a pen or the mouse',
    });
    body.append(svg);
    const box = svg.getBoundingClientRect();
    const width = Math.round(box.width) || 320;
    const height = Math.round(box.height) || 128;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.append(svgElement('line', {
      x1: width * 0.08, x2: width * 0.92, y1: height * 0.78, y2: height * 0.78, class: 'signature-line',
    }));
    const ink = svgElement('path', { d: '', class: 'signature-ink' });
    svg.append(ink);
    const pad = { width, height, strokes: [], pointer: null, full: false };
    a.pad = pad;
    const point = (ev) => {
      const r = svg.getBoundingClientRect();
      const x = ((ev.clientX - r.left) * width) / (r.width || width);
      const y = ((ev.clientY - r.top) * height) / (r.height || height);
      return [Math.round(Math.min(width, Math.max(0, x))), Math.round(Math.min(height, Math.max(0, y)))];
    };
    const redraw = () => {
      const d = strokesPath(pad.strokes);
      ink.setAttribute('d', d);
      a.value = d;
      a.touched = pad.strokes.length > 0;
      renderInputCheck();
      if (pad.full) $('input-error').textContent = 'The pad is full: press OK, or Clear and sign again';
    };
    // Room for one more point of the largest coordinates ("L1234 1234").
    const fits = () => new TextEncoder().encode(ink.getAttribute('d')).length + 12 <= MAX_SIGNATURE_BYTES;
    const add = (ev) => {
      const stroke = pad.strokes[pad.strokes.length - 1];
      const p = point(ev);
      const last = stroke[stroke.length - 1];
      if (last && last[0] === p[0] && last[1] === p[1]) return;
      if (!fits()) {
        pad.full = true;
        return;
      }
      stroke.push(p);
    };
    svg.addEventListener('pointerdown', (ev) => {
      if (pad.pointer !== null || (ev.pointerType === 'mouse' && ev.button !== 0)) return;
      ev.preventDefault();
      if (!fits()) {
        pad.full = true;
        redraw();
        return;
      }
      pad.pointer = ev.pointerId;
      try { svg.setPointerCapture(ev.pointerId); } catch (_) { /* synthetic pointer */ }
      pad.strokes.push([point(ev)]);
      redraw();
    });
    svg.addEventListener('pointermove', (ev) => {
      if (ev.pointerId !== pad.pointer) return;
      ev.preventDefault();
      const events = typeof ev.getCoalescedEvents === 'function' ? ev.getCoalescedEvents() : [];
      for (const e of events.length ? events : [ev]) add(e);
      redraw();
    });
    const lift = (ev) => {
      if (ev.pointerId !== pad.pointer) return;
      if (ev.type === 'pointerup') add(ev);
      pad.pointer = null;
      redraw();
    };
    svg.addEventListener('pointerup', lift);
    svg.addEventListener('pointercancel', lift);
  }
  function clearSignature() {
    const a = running() && current.action;
    if (!a || !a.pad) return;
    a.pad.strokes = [];
    a.pad.pointer = null;
    a.pad.full = false;
    $('signature-pad').querySelector('.signature-ink').setAttribute('d', '');
    a.value = '';
    a.touched = false;
    renderInputCheck();
  }

  function startQr(qr) {
    if (!qr || !qr.data) {
      current.action = { kind: 'qr' };
      endAction(actionResult('FAILED', 'No QR code in the request', {}));
      return;
    }
    let code;
    try {
      code = EftcloudCodes.qrSvg(qr.data, `QR code${qr.caption ? `: ${qr.caption}` : ''}`);
    } catch (e) {
      current.action = { kind: 'qr' };
      endAction(actionResult('FAILED', `Cannot draw this QR code: ${e.message}`, {}));
      return;
    }
    const total = timeoutOf(qr);
    current.action = { kind: 'qr', qr, deadline: Date.now() + total, total };
    $('qr-code').replaceChildren(code);
    $('qr-caption').textContent = qr.caption || '';
    $('qr-caption').hidden = !qr.caption;
    prompt('show_qr', qr.caption || 'Scan the QR code');
    render();
  }
  function qrDone() {
    const a = running() && current.action;
    if (a && a.kind === 'qr') endAction(actionResult('OK', 'Dismissed', { QrOutcome: 'dismissed' }));
  }
  function actionCancel() {
    const a = running() && current.action;
    if (a && a.kind !== 'print') endAction(actionCancelled(cancelReason.CUSTOMER));
  }

  // The countdowns of an input and a QR code, and their end.
  setInterval(() => {
    const a = running() && current.action;
    if (!a || !a.deadline) return;
    const left = Math.max(0, a.deadline - Date.now());
    const id = a.kind === 'qr' ? 'qr' : 'input';
    $(`${id}-bar`).style.width = `${(left / a.total) * 100}%`;
    $(`${id}-countdown`).textContent = `${Math.ceil(left / 1000)} s left`;
    if (left > 0) return;
    if (a.kind === 'qr') endAction(actionResult('OK', 'Timed out', { QrOutcome: 'timeout' }));
    else endAction(actionCancelled(cancelReason.TIMEOUT));
  }, 200);

  // The printer prints at once, or fails at once when its paper is out.
  function startPrint(job) {
    current.action = { kind: 'print' };
    if (paperOut) {
      endAction(actionResult('FAILED', 'Printer out of paper', { PrinterStatus: 'NO_PAPER' }));
      return;
    }
    let slip;
    try {
      if (!job || !Array.isArray(job.lines) || !job.lines.length) throw new Error('nothing to print');
      slip = buildSlip(job.lines);
    } catch (e) {
      endAction(actionResult('FAILED', `Cannot print this slip: ${e.message}`, { PrinterStatus: 'ERROR' }));
      return;
    }
    prompt('printing', 'Printing');
    slip.dataset.transactionId = current.offer.transaction_id;
    slips = [slip, ...slips].slice(0, SLIPS_KEPT);
    renderSlips();
    endAction(actionResult('OK', 'Printed', { PrinterStatus: 'OK' }));
  }

  // A slip as the paper shows it: 32 columns of monospace, bold, centred or right, large
  // (double width and height), QR codes and barcodes drawn, blank feeds, and the cut.
  function buildSlip(lines) {
    const paper = document.createElement('div');
    paper.className = 'slip';
    paper.setAttribute('role', 'document');
    paper.setAttribute('aria-label', 'Printed slip');
    paper.style.setProperty('--columns', String(PRINTER_COLUMNS));
    const part = (cls) => {
      const e = document.createElement('div');
      e.className = cls;
      paper.append(e);
      return e;
    };
    for (const line of lines) {
      switch (line.kind) {
        case 'text': {
          const e = part('slip-text');
          if (line.bold) e.classList.add('slip-bold');
          if (line.large) e.classList.add('slip-large');
          if (line.align === 'centre' || line.align === 'right') e.classList.add(`slip-${line.align}`);
          e.textContent = line.text || '\u00a0';
          break;
        }
        case 'qr':
          part('slip-qr').append(EftcloudCodes.qrSvg(line.data, `QR code: ${line.data}`));
          break;
        case 'barcode': {
          const e = part('slip-barcode');
          e.append(EftcloudCodes.barcodeSvg(line.symbology, line.data));
          const text = document.createElement('div');
          text.className = 'slip-barcode-text';
          text.textContent = line.symbology === 'ean13' ? EftcloudCodes.ean13(line.data).digits : line.data;
          e.append(text);
          break;
        }
        case 'feed':
          part('slip-feed').style.height = `${1.3 * Math.max(1, Number(line.lines) || 1)}em`;
          break;
        case 'cut': {
          const e = part('slip-cut');
          e.setAttribute('role', 'separator');
          e.setAttribute('aria-label', 'Paper cut');
          e.textContent = '✂';
          break;
        }
        default:
          logNote(`print: a line of kind ${line.kind} is not known here, left out`);
      }
    }
    return paper;
  }

  function renderSlips() {
    $('slips').replaceChildren(...slips);
    $('tear-off').disabled = !slips.length;
  }

  // ---- the customer display ------------------------------------------------------------------
  // Frames may come twice or, across nodes, out of order: only a newer version is shown.
  function onDisplay(msg) {
    const version = Number(msg.version);
    if (!Number.isSafeInteger(version)) return;
    if (display.version !== null && version <= display.version) return;
    display = { version, cart: msg.cart || null };
    render();
  }

  // The payment's basket while it runs (the display's cart waits), else the display's cart.
  function renderCart() {
    const o = current && current.offer;
    const basket = o && !ACTIONS.has(o.function) && o.cart ? o.cart : null;
    const cart = basket || display.cart;
    $('cart-panel').hidden = !cart;
    $('idle-cart').hidden = true;
    if (!cart) return;
    // The cart's own currency, else the payment's; a display frame without one is in AUD (the
    // cloud names the merchant's when it is another).
    const code = cart.currency || (basket ? currencyOf(o) : 'AUD');
    $('cart-title').textContent = basket ? 'Basket of this payment' : 'Customer display';
    $('cart-panel').dataset.source = basket ? 'payment' : 'display';
    $('cart-currency').textContent = code;
    const rows = (cart.lines || []).map((l, i) => {
      const tr = document.createElement('tr');
      tr.dataset.line = String(i);
      const what = document.createElement('td');
      what.className = 'cart-description';
      what.textContent = l.description;
      if (l.unit_price != null) {
        const unit = document.createElement('span');
        unit.className = 'cart-unit';
        unit.textContent = `${l.quantity || '1'} × ${decimal(l.unit_price, code)}`;
        what.append(unit);
      }
      const qty = document.createElement('td');
      qty.className = 'cart-quantity';
      qty.textContent = l.quantity || '1';
      const amount = document.createElement('td');
      amount.className = 'cart-amount';
      amount.textContent = decimal(l.amount, code);
      tr.append(what, qty, amount);
      return tr;
    });
    $('cart-lines').replaceChildren(...rows);
    $('cart-empty').hidden = rows.length > 0;
    $('cart-tax-row').hidden = cart.tax == null;
    $('cart-tax').textContent = cart.tax == null ? '' : money(cart.tax, code);
    $('cart-total').textContent = money(cart.total, code);
    const idle = $('idle-cart');
    idle.hidden = false;
    idle.textContent = `Total ${money(cart.total, code)}`;
  }

  // ---- results ---------------------------------------------------------------------------------
  // A receipt as fixed-width text (the SmartConnect `Receipt` field) and, beside it, as
  // structured copies (`receipts`): the header, the labelled values, the lines below. The
  // configured receipt header opens both and the configured footer closes both.
  class Receipt {
    constructor(f, ts, currency) {
      const own = ['EFTCLOUD VIRTUAL TERMINAL', LABELS[f] || f];
      const configuredHeader = configuredLines(config.settings.receipt_header);
      this.configuredFooter = configuredLines(config.settings.receipt_footer);
      const cut = (l) => Array.from(l).slice(0, MAX_RECEIPT_LINE).join('');
      this.currency = currency;
      this.lines = [];
      this.header = [...configuredHeader.map(cut), ...own];
      this.fields = [];
      this.footer = [];
      this.finished = false;
      this.body = false; // lines centred from now on go below the fields
      for (const line of configuredHeader) this.centredWrapped(line);
      this.center(own[0]);
      this.pair('MERCHANT ID', 'MID000000001');
      this.pair('TERMINAL ID', creds.deviceId);
      this.pair('DATE/TIME', receiptTime(ts));
      this.rule();
      this.center(own[1]);
      this.body = true;
    }
    center(s) {
      const t = s.slice(0, RECEIPT_WIDTH);
      this.lines.push(' '.repeat(Math.floor((RECEIPT_WIDTH - t.length) / 2)) + t);
      if (this.body) this.footer.push(s);
    }
    pair(left, right, value = String(right)) {
      const r = String(right).slice(0, RECEIPT_WIDTH);
      const l = left.slice(0, Math.max(0, RECEIPT_WIDTH - r.length - 1));
      this.lines.push(l + ' '.repeat(Math.max(1, RECEIPT_WIDTH - l.length - r.length)) + r);
      this.fields.push({ label: left, value });
    }
    amount(label, minor) {
      this.pair(label, `${this.currency} ${decimal(minor, this.currency).padStart(9)}`, money(minor, this.currency));
    }
    // A merchant's configured line: centred, wrapped rather than cut (a blank line stays blank).
    centredWrapped(s) {
      const parts = wrap(s, RECEIPT_WIDTH);
      if (!parts.length) this.lines.push('');
      for (const part of parts) {
        this.lines.push(' '.repeat(Math.floor((RECEIPT_WIDTH - Array.from(part).length) / 2)) + part);
      }
    }
    rule() { this.lines.push('-'.repeat(RECEIPT_WIDTH)); }
    // The merchant's and the customer's copies, once finished.
    copies() {
      if (!this.finished) return null;
      const cut = (l) => Array.from(l).slice(0, MAX_RECEIPT_LINE).join('');
      const copy = (who) => ({
        header: this.header, fields: this.fields,
        footer: [...this.footer, who, ...this.configuredFooter.map(cut)],
      });
      return { merchant: copy('MERCHANT COPY'), customer: copy('CUSTOMER COPY') };
    }
    card(card) {
      if (card.pan) {
        this.pair('CARD', `${card.type} ${card.pan}`);
        this.pair('ACCOUNT', card.account);
      } else {
        this.pair('WALLET', card.type);
      }
    }
    finish(verdict) {
      this.rule();
      this.center(verdict);
      for (const line of this.configuredFooter) this.centredWrapped(line);
      this.finished = true;
      return this.lines.join('\n');
    }
  }

  function outcome(offer, transactionResult, result, text, fields) {
    const r = { transaction_id: offer.transaction_id, result, result_text: text, fields };
    // Financial functions must carry transaction_result; non-financial ones omit it.
    if (FINANCIAL.has(offer.function)) r.transaction_result = transactionResult;
    return r;
  }

  function cardFields(fields, card) {
    fields.CardType = card.type;
    if (card.pan) {
      fields.CardPan = card.pan;
      fields.AccountType = card.account;
    }
  }

  // The configured surcharge of `card`'s type on a card purchase: on the purchase and its tip
  // (a purchase plus cash: on the purchase part, never the cash out); 0 before a card is known.
  function surchargeOf(offer, card, tip) {
    if (!card) return 0;
    const amount = amountOf(offer) || 0;
    let purchase;
    if (offer.function === 'Card.Purchase') purchase = amount + tip;
    else if (offer.function === 'Card.PurchasePlusCash') purchase = Math.max(0, amount - (offer.amount_cash || 0));
    else return 0;
    const rule = surchargeRule(card.type);
    return rule ? surchargeOn(rule, purchase) : 0;
  }

  // The batch of a settlement (device protocol §4.9): the approved transactions since the last
  // approved cutover (or on `date`, yyyyMMdd), their tip adjustments applied, their voids taking
  // them out, with totals by card type. The journal keeps the last 50 finished entries, so a
  // longer period is reported short (the cloud's reconciliation then lists what is missing).
  function settlementBatch(date, periodEnd) {
    const entries = loadJournal().filter((e) => e.offer && e.result);
    const stamp = (e) => (e.result.fields && e.result.fields.Timestamp) || null;
    let period;
    let periodStart = null;
    if (date) {
      period = entries.filter((e) => (stamp(e) || '').startsWith(date));
      periodStart = `${date}000000`;
    } else {
      let last = -1;
      entries.forEach((e, i) => {
        if (e.offer.function === 'Acquirer.Settlement.Cutover' && e.result.result === 'OK') last = i;
      });
      period = entries.slice(last + 1);
      periodStart = last >= 0 ? stamp(entries[last]) : (entries.length ? stamp(entries[0]) : null);
    }
    const items = [];
    const tips = {};
    for (const e of period) {
      if (e.result.transaction_result !== 'OK-ACCEPTED') continue;
      const f = e.offer.function;
      const original = e.offer.original && e.offer.original.transaction_id;
      const fields = e.result.fields || {};
      if (f === 'Card.Void') {
        const i = items.findIndex((x) => x.transaction_id === original);
        if (i >= 0) items.splice(i, 1);
      } else if (f === 'Card.TipAdjust') {
        const item = items.find((x) => x.transaction_id === original);
        if (item) {
          const tip = e.offer.amount_tip || 0;
          item.amount = Math.max(0, item.amount - (tips[original] || 0)) + tip;
          tips[original] = tip;
        }
      } else if (SETTLES[f]) {
        tips[e.id] = parseInt(fields.AmountTip || '0', 10) || 0;
        items.push({
          transaction_id: e.id,
          function: f,
          card_type: fields.CardType || 'UNKNOWN',
          amount: parseInt(fields.AmountTotal || '0', 10) || 0,
        });
      }
    }
    const byType = {};
    for (const i of items) {
      const t = byType[i.card_type] || (byType[i.card_type] = {
        card_type: i.card_type, purchase_count: 0, purchase_amount: 0, refund_count: 0, refund_amount: 0,
      });
      const kind = SETTLES[i.function] || 'purchase';
      t[`${kind}_count`] += 1;
      t[`${kind}_amount`] += i.amount;
    }
    const batch = {
      period_end: periodEnd,
      totals: Object.keys(byType).sort().map((k) => byType[k]),
      transactions: items,
    };
    if (periodStart) batch.period_start = periodStart;
    return batch;
  }

  function lastFinancial() {
    const done = loadJournal().filter((e) => e.offer && e.result && FINANCIAL.has(e.offer.function));
    return done.length ? done[done.length - 1] : null;
  }

  // The result of a payment or another SmartConnect function; a payment's carries its
  // receipt's copies as data too.
  function buildResult(kind, c) {
    const ts = timestamp();
    const receipt = new Receipt(c.offer.function, ts, currencyOf(c.offer));
    const r = resultOf(kind, c, ts, receipt);
    const copies = receipt.copies();
    if (copies && FINANCIAL.has(c.offer.function) && r.fields && r.fields.Receipt) r.receipts = copies;
    return r;
  }

  function resultOf(kind, c, ts, receipt) {
    const offer = c.offer;
    const f = offer.function;
    const fields = { Timestamp: ts, TerminalRef: nextTerminalRef() };
    const base = headlineAmount(offer);
    if (offer.transaction_reference) fields.TransactionReference = offer.transaction_reference;
    if (offer.original) {
      fields.OriginalTransactionId = offer.original.transaction_id;
      if (offer.original.fields && offer.original.fields.AuthId) receipt.pair('ORIGINAL AUTH', offer.original.fields.AuthId);
    }
    if (FOLLOW_UPS.has(f) && !offer.original) {
      // The cloud always names the original: a protocol bug, answered without touching a card.
      fields.Receipt = receipt.finish('FAILED');
      return outcome(offer, 'FAILED', 'FAILED', 'NO ORIGINAL IN REQUEST', fields);
    }

    if (kind === 'cancel' || kind === 'pos-cancel') {
      const text = kind === 'cancel' ? 'CANCELLED ON DEVICE' : 'CANCELLED BY POS';
      if (base !== null) receipt.amount('AMOUNT', base);
      fields.Receipt = receipt.finish('CANCELLED');
      return outcome(offer, 'CANCELLED', 'CANCELLED', text, fields);
    }
    if (kind === 'decline') {
      if (!FINANCIAL.has(f)) return outcome(offer, 'FAILED', 'FAILED', 'DECLINED BY OPERATOR', fields);
      // A follow-up never invents a card: it has its original's or none.
      const card = c.card || (offer.original ? null : pick(CARDS));
      if (card) {
        cardFields(fields, card);
        receipt.card(card);
      }
      if (base !== null) receipt.amount('AMOUNT', base);
      if (FOLLOW_UPS.has(f) && base !== null) fields.AmountTotal = String(base);
      receipt.pair('RESPONSE', '51');
      receipt.center('INSUFFICIENT FUNDS');
      fields.Receipt = receipt.finish('DECLINED');
      return outcome(offer, 'OK-DECLINED', 'OK', 'DECLINED 51 INSUFFICIENT FUNDS', fields);
    }

    // Approve.
    if (!FINANCIAL.has(f)) return nonFinancial(offer, c, fields, receipt);
    if (FOLLOW_UPS.has(f)) return followUp(offer, c, fields, receipt);
    let card = c.card;
    if (!card && !offer.original) card = f === 'Card.Finalise' ? CARDS[0] : pick(CARDS);
    if (card) {
      cardFields(fields, card);
      receipt.card(card);
    }
    const amount = base || 0;
    const tip = TIP_FUNCTIONS.has(f) ? c.tip : 0;
    if (f === 'Card.PurchasePlusCash') {
      const cash = offer.amount_cash || 0;
      fields.AmountCash = String(cash);
      receipt.amount('PURCHASE', amount - cash);
      receipt.amount('CASH', cash);
    } else if (f === 'Card.CashAdvance') {
      fields.AmountCash = String(amount);
      receipt.amount('CASH', amount);
    } else if (f === 'Card.Authorise') {
      fields.AmountAuth = String(amount);
      receipt.amount('AUTHORISED', amount);
    } else if (f === 'Card.Finalise') {
      fields.AmountFinal = String(amount);
      receipt.amount('FINAL', amount);
    } else {
      receipt.amount(LABELS[f] || 'AMOUNT', amount);
    }
    const surcharge = surchargeOf(offer, card, tip);
    if (tip > 0) receipt.amount('TIP', tip);
    if (surcharge > 0) receipt.amount('SURCHARGE', surcharge);
    receipt.amount('TOTAL', amount + tip + surcharge);
    if (c.signature === 'accepted') receipt.center('SIGNATURE VERIFIED');
    // A completion goes through under its authorisation's approval.
    const originalAuth = f === 'Card.Finalise' && offer.original && offer.original.fields
      ? offer.original.fields.AuthId : null;
    const auth = originalAuth || randomDigits(6);
    const acq = randomDigits(12);
    receipt.pair('AUTH ID', auth);
    receipt.pair('ACQ REF', acq);
    Object.assign(fields, {
      AmountTotal: String(amount + tip + surcharge),
      AmountSurcharge: String(surcharge),
      AmountTip: String(tip),
      AuthId: auth,
      AcquirerRef: acq,
      Receipt: receipt.finish(isRefund(f) ? 'REFUND APPROVED' : 'APPROVED'),
    });
    return outcome(offer, 'OK-ACCEPTED', 'OK', 'APPROVED', fields);
  }

  // A void, tip adjustment, top-up or release, approved: on the original's card, for the
  // original's amount (void, release), the new total with its tip, or the top-up.
  function followUp(offer, c, fields, receipt) {
    const f = offer.function;
    const o = offer.original;
    if (c.card) {
      cardFields(fields, c.card);
      receipt.card(c.card);
    }
    const total = headlineAmount(offer) || 0;
    if (f === 'Card.TipAdjust') {
      const tip = offer.amount_tip || 0;
      fields.AmountTip = String(tip);
      receipt.amount('AMOUNT', o.amount);
      receipt.amount('NEW TIP', tip);
      receipt.amount('TOTAL', total);
    } else {
      receipt.amount(f === 'Card.TopUp' ? 'TOP-UP' : 'AMOUNT', total);
    }
    const auth = randomDigits(6);
    const acq = randomDigits(12);
    receipt.pair('AUTH ID', auth);
    receipt.pair('ACQ REF', acq);
    Object.assign(fields, {
      AmountTotal: String(total),
      AuthId: auth,
      AcquirerRef: acq,
      Receipt: receipt.finish('APPROVED'),
    });
    return outcome(offer, 'OK-ACCEPTED', 'OK', 'APPROVED', fields);
  }

  function nonFinancial(offer, c, fields, receipt) {
    switch (offer.function) {
      case 'Terminal.GetStatus':
        fields.Status = 'READY';
        return outcome(offer, null, 'OK', 'READY', fields);
      case 'Terminal.ReadCard': {
        const card = c.card || pick(CARDS);
        cardFields(fields, card);
        return outcome(offer, null, 'OK', 'CARD READ', fields);
      }
      case 'Acquirer.Logon':
        fields.Receipt = receipt.finish('LOGON SUCCESSFUL');
        return outcome(offer, null, 'OK', 'LOGON SUCCESSFUL', fields);
      case 'Journal.ReprintReceipt': {
        const last = loadJournal().filter((e) => e.result && e.result.fields && e.result.fields.Receipt).pop();
        if (!last) return outcome(offer, null, 'FAILED', 'NO RECEIPT TO REPRINT', fields);
        fields.Receipt = `     *** DUPLICATE ***\n${last.result.fields.Receipt}`;
        fields.ReferenceId = last.id;
        return outcome(offer, null, 'OK', 'REPRINT OK', fields);
      }
      case 'Journal.GetTransResult': {
        const last = lastFinancial();
        if (!last) return outcome(offer, null, 'FAILED', 'NO TRANSACTION IN JOURNAL', fields);
        const copy = { ...last.result.fields, ...fields };
        copy.ReferenceId = last.id;
        copy.LastTransactionType = last.offer.function;
        copy.LastTransactionResult = last.result.transaction_result || '';
        copy.LastResult = last.result.result;
        return outcome(offer, null, 'OK', last.result.result_text, copy);
      }
      default: {
        const text = offer.function === 'Acquirer.Settlement.Cutover' ? 'CUTOVER COMPLETE' : 'SETTLEMENT TOTALS';
        const batch = settlementBatch(offer.date, fields.Timestamp);
        const sum = (k) => batch.totals.reduce((n, t) => n + t[k], 0);
        const purchases = sum('purchase_amount');
        const refunds = sum('refund_amount');
        fields.SettlementDate = offer.date || fields.Timestamp.slice(0, 8);
        fields.PurchaseCount = String(sum('purchase_count'));
        fields.PurchaseTotal = String(purchases);
        fields.RefundCount = String(sum('refund_count'));
        fields.RefundTotal = String(refunds);
        fields.NetTotal = String(purchases - refunds);
        receipt.pair('SETTLEMENT DATE', fields.SettlementDate);
        receipt.pair('PURCHASES', fields.PurchaseCount);
        receipt.amount('  TOTAL', purchases);
        receipt.pair('REFUNDS', fields.RefundCount);
        receipt.amount('  TOTAL', refunds);
        fields.Receipt = receipt.finish(text);
        const r = outcome(offer, null, 'OK', text, fields);
        r.settlement = batch;
        return r;
      }
    }
  }

  // ---- rendering ---------------------------------------------------------------------------------
  function registerName(r) { return r.register_name || r.register_id; }

  function render() {
    const haveDevice = !!creds;
    $('setup').hidden = haveDevice;
    $('terminal').hidden = !haveDevice;
    $('vt-enabled').hidden = !vtEnabled;
    $('vt-disabled').hidden = vtEnabled;
    if (!haveDevice) return;

    $('device-id').textContent = creds.deviceId;
    $('device-registers').textContent = registers.length
      ? registers.map(registerName).join(', ') : 'not paired';
    $('device-summary').textContent =
      `Device ${creds.deviceId}; journal: ${unacknowledged().length} result(s) awaiting acknowledgement.`;
    renderConfig();

    const list = $('registers');
    list.replaceChildren(...registers.map((r) => {
      const li = document.createElement('li');
      const name = document.createElement('strong');
      name.textContent = registerName(r);
      const meta = document.createElement('span');
      meta.className = 'reg-meta';
      meta.textContent = `${r.business_name} · ${r.vendor_name} · ${r.register_id}`;
      li.append(name, meta);
      return li;
    }));
    if (!registers.length) {
      const li = document.createElement('li');
      li.textContent = 'No register paired yet.';
      list.append(li);
    }

    const screen = $('screen');
    let mode = 'idle';
    // An input and a QR code have screens of their own; a slip prints at once.
    if (current) mode = current.action && current.action.kind !== 'print' ? current.action.kind : 'transaction';
    else if (shown) mode = 'result';
    else if (pairingWanted || registers.length === 0) mode = 'pairing';
    screen.dataset.screen = mode;

    if (mode === 'pairing') renderPairing();
    const idleText = config.settings.idle_text;
    $('idle-text').textContent = idleText;
    $('idle-text').hidden = !idleText;
    $('idle-registers').textContent = notice ||
      (registers.length ? `Paired with ${registers.map(registerName).join(', ')}` : '');

    if (current) {
      const o = current.offer;
      const code = currencyOf(o);
      const amount = headlineAmount(o);
      $('tx-register').textContent = o.register ? `From ${registerName(o.register)}` : '';
      $('tx-function').textContent = o.function;
      const tip = TIP_FUNCTIONS.has(o.function) ? current.tip || 0 : 0;
      const surcharge = surchargeOf(o, current.card, tip);
      $('tx-amount').textContent = amount !== null ? money(amount + tip + surcharge, code) : '';
      const extra = [];
      if (tip) extra.push(`incl. tip ${money(tip, code)}`);
      if (surcharge) extra.push(`incl. surcharge ${money(surcharge, code)}`);
      if (o.function === 'Card.TipAdjust') extra.push(`incl. new tip ${money(o.amount_tip, code)}`);
      if (o.amount_cash) extra.push(`incl. cash ${money(o.amount_cash, code)}`);
      if (o.transaction_reference) extra.push(`ref ${o.transaction_reference}`);
      if (o.date) extra.push(`date ${o.date}`);
      $('tx-extra').textContent = extra.join(' · ');
      // The payment this one acts on, and the card it goes back to.
      const original = o.original ? [
        `${LABELS[o.original.function] || o.original.function} ${money(o.original.amount, code)}`,
        current.card ? `card ${cardText(current.card)}` : 'no card on file',
        `…${String(o.original.transaction_id).slice(-12)}`,
      ].join(' · ') : '';
      $('tx-original').textContent = original;
      $('tx-original').hidden = !original;
      $('tx-prompt').textContent = notice || current.prompt;
    }
    $('tip-choices').hidden = !askingTip();

    if (shown) {
      const r = shown.result;
      $('result-text').textContent = r.result_text || r.result;
      let delivery = shown.delivered ? 'Result delivered to the cloud' : 'Sending the result…';
      if (!shown.delivered && (!ws || !welcomed)) delivery = 'Offline: the result is kept and sent when the terminal is back online';
      $('result-delivery').textContent = notice || delivery;
    }
    renderShownResult();
    renderCart();

    const run = running();
    const f = current ? current.offer.function : '';
    const action = ACTIONS.has(f);
    const onFile = !!(current && current.offer.original);
    const cardIn = run && !action && (current.card || !needsCard(current.offer));
    $('btn-present-card').disabled = !run || !needsCard(current.offer) || !!current.card || askingTip();
    $('btn-present-card').textContent = isQr(f) ? 'Customer pays (QR)' : 'Present card';
    $('btn-approve').disabled = !cardIn || current.signature === 'required';
    $('btn-decline').disabled = !run || action;
    // On an input or a QR code the device's Cancel key is the customer's; a slip cannot be.
    $('btn-cancel').disabled = !run || (action && (!current.action || current.action.kind === 'print'));
    $('paper-out').checked = paperOut;
    $('printer-status').textContent = paperOut
      ? 'Out of paper: a print fails with NO_PAPER'
      : `Paper loaded · ${PRINTER_COLUMNS} columns`;
    $('btn-tip').disabled = !run || !TIP_FUNCTIONS.has(f) || askingTip();
    $('tip-amount').disabled = $('btn-tip').disabled;
    // No card in hand for a follow-up: nothing to sign.
    $('btn-signature-required').disabled = !cardIn || !!current.signature || !FINANCIAL.has(f) || isQr(f) || onFile;
    $('btn-signature-accepted').disabled = !run || current.signature !== 'required';
    $('refresh-code').disabled = !welcomed;
    $('unpair-all').disabled = !welcomed || registers.length === 0;
    $('plugged').checked = plugged;
    $('reconnect').hidden = !halted;
    if (halted) $('connection-status').textContent = 'Replaced by another tab';
  }

  // The configuration this terminal runs, for the operator: its version and what it sets.
  function renderConfig() {
    const s = config.settings;
    const version = $('config-version');
    version.dataset.version = config.version === null ? '' : String(config.version);
    version.textContent = config.version === null ? 'none from the cloud yet (defaults)' : `version ${config.version}`;
    $('config-pending').hidden = !pendingConfig;
    $('config-pending').textContent = pendingConfig
      ? `version ${pendingConfig.version} is applied when this transaction ends` : '';
    $('config-language').textContent = s.language;
    $('config-currency').textContent = s.currency;
    $('config-tipping').textContent = s.tipping ? `on: ${s.tip_presets.map((p) => `${p}%`).join(', ')}` : 'off';
    $('config-surcharges').textContent = s.surcharges.length ? s.surcharges.map((r) => {
      const rate = `${r.card === ANY_CARD ? 'any card' : r.card} ${(r.bps / 100).toFixed(2).replace(/\.?0+$/, '')}%`;
      return r.cap != null ? `${rate} (cap ${decimal(r.cap, s.currency)})` : rate;
    }).join(', ') : 'none';
    $('config-timeouts').textContent = `card ${s.card_timeout_secs} s · input ${s.input_timeout_secs} s`;
    $('device-language').textContent = s.language;
    $('device-language').title = `Language: ${s.language} (this page speaks English)`;
  }

  // The finished transaction's receipt (a payment) or its answer (a terminal action).
  function renderShownResult() {
    $('receipt-panel').hidden = !shown;
    if (!shown) return;
    const fields = shown.result.fields || {};
    const action = shown.offer && ACTIONS.has(shown.offer.function);
    $('receipt-title').textContent = action ? 'Result' : 'Receipt';
    if (action) {
      const shorten = (v) => (v.length > 60 ? `${v.slice(0, 57)}…` : v);
      $('receipt').textContent = [`${shown.offer.function}: ${shown.result.result}`,
        ...Object.entries(fields).filter(([k]) => k !== 'Timestamp').map(([k, v]) => `${k}: ${shorten(String(v))}`),
      ].join('\n');
    } else {
      $('receipt').textContent = fields.Receipt || '(no receipt)';
    }
    // A signature as the POS will draw it: its path in its view box.
    const preview = $('signature-preview');
    preview.hidden = !(action && fields.SignatureViewBox && fields.InputValue);
    if (!preview.hidden) {
      preview.setAttribute('viewBox', fields.SignatureViewBox);
      preview.querySelector('path').setAttribute('d', fields.InputValue);
    }
    renderReceipts(shown.result.receipts);
  }

  // The structured copies of a receipt, when the result has them.
  function renderReceipts(receipts) {
    const box = $('receipt-copies');
    const copies = receipts ? [['Merchant copy', receipts.merchant], ['Customer copy', receipts.customer]]
      .filter(([, r]) => r) : [];
    $('receipt-copies-box').hidden = !copies.length;
    box.replaceChildren(...copies.map(([title, r]) => {
      const section = document.createElement('section');
      section.className = 'receipt-copy';
      const h = document.createElement('h4');
      h.textContent = title;
      const centred = (text) => {
        const p = document.createElement('p');
        p.className = 'receipt-centred';
        p.textContent = text;
        return p;
      };
      const dl = document.createElement('dl');
      for (const f of r.fields || []) {
        const dt = document.createElement('dt');
        dt.textContent = f.label;
        const dd = document.createElement('dd');
        dd.textContent = f.value;
        dl.append(dt, dd);
      }
      section.append(h, ...(r.header || []).map(centred), dl, ...(r.footer || []).map(centred));
      return section;
    }));
  }

  function renderPairing() {
    if (!pairing) {
      $('pairing-code').textContent = '…';
      $('pairing-code').dataset.code = '';
      $('pairing-countdown').textContent = welcomed ? 'Requesting a code…' : 'Waiting for the connection…';
      $('pairing-bar').style.width = '0%';
      return;
    }
    const code = pairing.code;
    // Two groups for the eye, but no space in the text: copying the code gives its 8 digits.
    if (code.length === 8) {
      const head = document.createElement('span');
      head.textContent = code.slice(0, 4);
      const tail = document.createElement('span');
      tail.className = 'code-gap';
      tail.textContent = code.slice(4);
      $('pairing-code').replaceChildren(head, tail);
    } else {
      $('pairing-code').textContent = code;
    }
    $('pairing-code').dataset.code = code;
    const left = pairing.expiresAt - Date.now();
    const total = pairing.expiresAt - pairing.issuedAt;
    if (left <= 0) {
      $('pairing-countdown').textContent = 'Expired: waiting for a new code';
      $('pairing-bar').style.width = '0%';
    } else {
      const s = Math.ceil(left / 1000);
      $('pairing-countdown').textContent = `Expires in ${Math.floor(s / 60)}:${pad2(s % 60)}`;
      $('pairing-bar').style.width = `${Math.max(0, Math.min(100, (left / total) * 100))}%`;
    }
  }
  setInterval(() => {
    if (creds && $('screen').dataset.screen === 'pairing') renderPairing();
    if (reconnectTimer && !ws && plugged) {
      const s = Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000));
      $('connection-status').textContent = notice.startsWith('Authentication')
        ? `Authentication failed, retrying in ${s} s` : `Offline, retrying in ${s} s`;
    }
  }, 1000);

  // ---- the message log -------------------------------------------------------------------------
  function shorten(value) {
    return JSON.stringify(value, (k, v) => (typeof v === 'string' && v.length > 80 ? `${v.slice(0, 77)}…` : v));
  }
  function addLog(dirClass, dirText, type, body) {
    const li = document.createElement('li');
    li.dataset.type = type;
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    const dir = document.createElement('span');
    dir.className = `dir ${dirClass}`;
    dir.textContent = dirText;
    const t = document.createElement('code');
    t.textContent = type;
    const b = document.createElement('span');
    b.className = 'body';
    b.textContent = body ? ` ${body}` : '';
    li.append(time, dir, t, b);
    const log = $('log');
    if (!$('show-heartbeats').checked && (type === 'ping' || type === 'pong')) li.hidden = true;
    log.prepend(li);
    while (log.children.length > LOG_MAX) log.lastElementChild.remove();
  }
  function logMessage(direction, msg) {
    const { type, ...rest } = msg;
    addLog(direction === 'out' ? 'dir-out' : 'dir-in', direction === 'out' ? 'sent' : 'recv', type, shorten(rest));
  }
  function logNote(text) { addLog('dir-note', 'note', '', text); }

  // ---- setup -----------------------------------------------------------------------------------
  function loadCredentials() {
    try {
      const c = JSON.parse(sessionStorage.getItem(CREDENTIALS_KEY) || 'null');
      if (c && typeof c.deviceId === 'string' && typeof c.secret === 'string') return c;
    } catch (_) { /* none */ }
    return null;
  }

  function useDevice(c) {
    creds = c;
    sessionStorage.setItem(CREDENTIALS_KEY, JSON.stringify(c));
    registers = [];
    current = null;
    shown = null;
    notice = '';
    halted = null;
    display = { version: null, cart: null };
    slips = [];
    renderSlips();
    backoffMs = BACKOFF_MIN_MS;
    pendingConfig = null;
    config = loadConfig();
    recoverJournal();
    render();
    connect();
  }

  async function createDevice() {
    const button = $('create-device');
    button.disabled = true;
    $('setup-error').textContent = '';
    try {
      const response = await fetch('/virtual-terminal/devices', { method: 'POST' });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        // 403: creating devices is off here (the message says how to turn it on); 429: too
        // many from this address (the message says when to retry).
        if (response.status === 403 || response.status === 404) {
          vtEnabled = false;
          render();
        }
        throw new Error(body.error || `HTTP ${response.status}`);
      }
      logNote(`enrolled ${body.deviceId}`);
      useDevice({ deviceId: body.deviceId, secret: body.secret });
    } catch (e) {
      $('setup-error').textContent = `Could not create a virtual terminal: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  $('create-device').addEventListener('click', createDevice);
  $('credentials-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const deviceId = $('device-id-input').value.trim();
    const secret = $('secret-input').value.trim();
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(deviceId) || !secret) {
      $('setup-error').textContent = 'Enter a device id (letters, digits, . _ -) and its secret.';
      return;
    }
    useDevice({ deviceId, secret });
  });
  $('forget-device').addEventListener('click', () => {
    const pending = creds ? unacknowledged().length : 0;
    const warning = pending
      ? `${pending} result(s) are not acknowledged yet and stay in this browser's storage. Forget the device anyway?`
      : 'Forget this device in this tab? (It stays enrolled on the cloud.)';
    if (!window.confirm(warning)) return;
    plugged = true;
    if (ws) drop('device forgotten');
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    stopPairing();
    sessionStorage.removeItem(CREDENTIALS_KEY);
    creds = null;
    current = null;
    shown = null;
    setConnection('none', 'Not connected');
    render();
  });

  $('plugged').addEventListener('change', (ev) => {
    plugged = ev.target.checked;
    if (!plugged) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      clearTimeout(refreshTimer);
      if (ws) drop('unplugged');
      setConnection('unplugged', 'Unplugged');
      logNote('unplugged');
    } else {
      logNote('plugged back in');
      halted = null;
      backoffMs = BACKOFF_MIN_MS;
      connect();
    }
    render();
  });

  $('btn-present-card').addEventListener('click', presentCard);
  $('btn-approve').addEventListener('click', () => finish('approve'));
  $('btn-decline').addEventListener('click', () => finish('decline'));
  $('btn-cancel').addEventListener('click', () => finish('cancel'));
  $('btn-tip').addEventListener('click', enterTip);
  $('tip-amount').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') enterTip(); });
  $('btn-signature-required').addEventListener('click', signatureRequired);
  $('btn-signature-accepted').addEventListener('click', signatureAccepted);
  $('input-ok').addEventListener('click', submitInput);
  $('input-clear').addEventListener('click', clearSignature);
  $('input-cancel').addEventListener('click', actionCancel);
  $('qr-done').addEventListener('click', qrDone);
  $('qr-cancel').addEventListener('click', actionCancel);
  $('paper-out').addEventListener('change', (ev) => {
    paperOut = ev.target.checked;
    logNote(paperOut ? 'printer: paper out' : 'printer: paper loaded');
    render();
  });
  $('tear-off').addEventListener('click', () => { slips = []; renderSlips(); });
  $('refresh-code').addEventListener('click', () => { shown = null; requestCode(); render(); });
  $('unpair-all').addEventListener('click', () => send({ type: 'unpair' }));
  $('done').addEventListener('click', () => { shown = null; notice = ''; render(); });
  $('clear-log').addEventListener('click', () => $('log').replaceChildren());
  $('show-heartbeats').addEventListener('change', (ev) => {
    for (const li of $('log').children) {
      if (li.dataset.type === 'ping' || li.dataset.type === 'pong') li.hidden = !ev.target.checked;
    }
  });
  $('reconnect').addEventListener('click', () => {
    halted = null;
    backoffMs = BACKOFF_MIN_MS;
    connect();
    render();
  });

  // The answer check, for the browser tests that hold it to the cloud's (and for the console).
  window.eftcloudVirtualTerminal = Object.freeze({ checkInputValue });

  const saved = loadCredentials();
  if (saved) useDevice(saved); else render();
})();
