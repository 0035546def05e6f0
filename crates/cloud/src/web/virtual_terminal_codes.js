// eftcloud virtual terminal: the symbols its screen and its printer draw, as SVG: QR codes
// (ISO/IEC 18004, byte mode, error correction level M, every version 1 to 40), EAN-13 and
// Code 128 barcodes. Served in front of virtual_terminal.js in the same script; pure functions,
// no DOM but the SVG they build, so node can load this file alone and check it
// (module.exports below).
'use strict';

const EftcloudCodes = (() => {
  // ---- QR codes ------------------------------------------------------------------------------
  // Per version (index 1 to 40), for level M: error correction codewords per block, and blocks.
  const ECC_PER_BLOCK_M = [-1, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28,
    28, 26, 26, 26, 26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28];
  const BLOCKS_M = [-1, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17,
    18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49];
  const FORMAT_BITS_M = 0; // level M's two bits in the format information

  // Modules of a version that carry data and error correction (everything but the patterns).
  function rawDataModules(ver) {
    let n = (16 * ver + 128) * ver + 64;
    if (ver >= 2) {
      const align = Math.floor(ver / 7) + 2;
      n -= (25 * align - 10) * align - 55;
      if (ver >= 7) n -= 36;
    }
    return n;
  }
  function dataCodewords(ver) {
    return Math.floor(rawDataModules(ver) / 8) - ECC_PER_BLOCK_M[ver] * BLOCKS_M[ver];
  }
  function alignmentPositions(ver) {
    if (ver === 1) return [];
    const count = Math.floor(ver / 7) + 2;
    const size = ver * 4 + 17;
    const step = Math.floor((ver * 8 + count * 3 + 5) / (count * 4 - 4)) * 2;
    const out = [6];
    for (let pos = size - 7; out.length < count; pos -= step) out.splice(1, 0, pos);
    return out;
  }

  // GF(2^8) with the QR code's polynomial x^8 + x^4 + x^3 + x^2 + 1.
  function gfMultiply(x, y) {
    let z = 0;
    for (let i = 7; i >= 0; i--) {
      z = (z << 1) ^ ((z >>> 7) * 0x11d);
      z ^= ((y >>> i) & 1) * x;
    }
    return z;
  }
  function rsDivisor(degree) {
    const out = new Array(degree).fill(0);
    out[degree - 1] = 1;
    let root = 1;
    for (let i = 0; i < degree; i++) {
      for (let j = 0; j < degree; j++) {
        out[j] = gfMultiply(out[j], root);
        if (j + 1 < degree) out[j] ^= out[j + 1];
      }
      root = gfMultiply(root, 0x02);
    }
    return out;
  }
  function rsRemainder(data, divisor) {
    const out = divisor.map(() => 0);
    for (const b of data) {
      const factor = b ^ out.shift();
      out.push(0);
      divisor.forEach((d, i) => { out[i] ^= gfMultiply(d, factor); });
    }
    return out;
  }

  // Bits of the header: UTF-8's ECI (26) when the text is not ASCII, so a reader does not
  // guess another character set; then byte mode and the count.
  const headerBits = (ver, utf8) => (utf8 ? 12 : 0) + 4 + (ver <= 9 ? 8 : 16);

  // The data codewords with their error correction, split in blocks and interleaved.
  function codewords(bytes, ver, utf8) {
    const bits = [];
    const put = (value, length) => {
      for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1);
    };
    if (utf8) {
      put(0b0111, 4);
      put(26, 8);
    }
    put(0b0100, 4); // byte mode
    put(bytes.length, ver <= 9 ? 8 : 16);
    for (const b of bytes) put(b, 8);
    const capacity = dataCodewords(ver) * 8;
    put(0, Math.min(4, capacity - bits.length)); // terminator
    put(0, (8 - (bits.length % 8)) % 8);
    for (let pad = 0xec; bits.length < capacity; pad ^= 0xec ^ 0x11) put(pad, 8);
    const data = [];
    for (let i = 0; i < bits.length; i += 8) data.push(bits.slice(i, i + 8).reduce((a, b) => (a << 1) | b, 0));

    const blocks = BLOCKS_M[ver];
    const eccLength = ECC_PER_BLOCK_M[ver];
    const raw = Math.floor(rawDataModules(ver) / 8);
    const shortBlocks = blocks - (raw % blocks);
    const shortLength = Math.floor(raw / blocks);
    const divisor = rsDivisor(eccLength);
    const all = [];
    for (let i = 0, k = 0; i < blocks; i++) {
      const block = data.slice(k, k + shortLength - eccLength + (i < shortBlocks ? 0 : 1));
      k += block.length;
      const ecc = rsRemainder(block, divisor);
      if (i < shortBlocks) block.push(0); // a place the long blocks fill; skipped below
      all.push(block.concat(ecc));
    }
    const out = [];
    for (let i = 0; i < all[0].length; i++) {
      all.forEach((block, j) => {
        if (i !== shortLength - eccLength || j >= shortBlocks) out.push(block[i]);
      });
    }
    return out;
  }

  const MASKS = [
    (x, y) => (x + y) % 2 === 0,
    (x, y) => y % 2 === 0,
    (x) => x % 3 === 0,
    (x, y) => (x + y) % 3 === 0,
    (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
    (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
    (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
    (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
  ];

  class QrSymbol {
    constructor(ver) {
      this.version = ver;
      this.size = ver * 4 + 17;
      this.dark = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
      this.fixed = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
    }
    setFixed(x, y, dark) {
      this.dark[y][x] = dark;
      this.fixed[y][x] = true;
    }
    drawPatterns() {
      const n = this.size;
      for (let i = 0; i < n; i++) {
        this.setFixed(6, i, i % 2 === 0);
        this.setFixed(i, 6, i % 2 === 0);
      }
      for (const [cx, cy] of [[3, 3], [n - 4, 3], [3, n - 4]]) {
        for (let dy = -4; dy <= 4; dy++) {
          for (let dx = -4; dx <= 4; dx++) {
            const x = cx + dx;
            const y = cy + dy;
            const d = Math.max(Math.abs(dx), Math.abs(dy));
            if (x >= 0 && x < n && y >= 0 && y < n) this.setFixed(x, y, d !== 2 && d !== 4);
          }
        }
      }
      const align = alignmentPositions(this.version);
      const last = align.length - 1;
      align.forEach((ax, i) => {
        align.forEach((ay, j) => {
          if ((i === 0 && j === 0) || (i === 0 && j === last) || (i === last && j === 0)) return;
          for (let dy = -2; dy <= 2; dy++) {
            for (let dx = -2; dx <= 2; dx++) this.setFixed(ax + dx, ay + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
          }
        });
      });
      this.drawFormat(0); // reserves the format areas; drawn again with the chosen mask
      if (this.version >= 7) {
        let rem = this.version;
        for (let i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
        const bits = (this.version << 12) | rem;
        for (let i = 0; i < 18; i++) {
          const bit = ((bits >>> i) & 1) === 1;
          const a = n - 11 + (i % 3);
          const b = Math.floor(i / 3);
          this.setFixed(a, b, bit);
          this.setFixed(b, a, bit);
        }
      }
    }
    drawFormat(mask) {
      const n = this.size;
      const data = (FORMAT_BITS_M << 3) | mask;
      let rem = data;
      for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
      const bits = ((data << 10) | rem) ^ 0x5412;
      const bit = (i) => ((bits >>> i) & 1) === 1;
      for (let i = 0; i <= 5; i++) this.setFixed(8, i, bit(i));
      this.setFixed(8, 7, bit(6));
      this.setFixed(8, 8, bit(7));
      this.setFixed(7, 8, bit(8));
      for (let i = 9; i < 15; i++) this.setFixed(14 - i, 8, bit(i));
      for (let i = 0; i < 8; i++) this.setFixed(n - 1 - i, 8, bit(i));
      for (let i = 8; i < 15; i++) this.setFixed(8, n - 15 + i, bit(i));
      this.setFixed(8, n - 8, true); // the dark module
    }
    drawCodewords(words) {
      const n = this.size;
      let i = 0;
      for (let right = n - 1; right >= 1; right -= 2) {
        if (right === 6) right = 5; // the vertical timing pattern
        for (let vert = 0; vert < n; vert++) {
          for (let j = 0; j < 2; j++) {
            const x = right - j;
            const upward = ((right + 1) & 2) === 0;
            const y = upward ? n - 1 - vert : vert;
            if (!this.fixed[y][x] && i < words.length * 8) {
              this.dark[y][x] = ((words[i >>> 3] >>> (7 - (i & 7))) & 1) === 1;
              i++;
            }
          }
        }
      }
    }
    applyMask(mask) {
      const m = MASKS[mask];
      for (let y = 0; y < this.size; y++) {
        for (let x = 0; x < this.size; x++) {
          if (!this.fixed[y][x] && m(x, y)) this.dark[y][x] = !this.dark[y][x];
        }
      }
    }
    // The standard's penalty: long runs, 2x2 blocks, finder-like runs, imbalance of dark.
    penalty() {
      const n = this.size;
      let score = 0;
      const addHistory = (run, history) => {
        history.pop();
        history.unshift(history[0] === 0 ? run + n : run);
      };
      const finderLike = (h) => {
        const u = h[1];
        const core = u > 0 && h[2] === u && h[3] === u * 3 && h[4] === u && h[5] === u;
        return (core && h[0] >= u * 4 && h[6] >= u ? 1 : 0) + (core && h[6] >= u * 4 && h[0] >= u ? 1 : 0);
      };
      const line = (get) => {
        let color = false;
        let run = 0;
        const history = [0, 0, 0, 0, 0, 0, 0];
        for (let i = 0; i < n; i++) {
          if (get(i) === color) {
            run++;
            if (run === 5) score += 3;
            else if (run > 5) score++;
          } else {
            addHistory(run, history);
            if (!color) score += finderLike(history) * 40;
            color = get(i);
            run = 1;
          }
        }
        if (color) {
          addHistory(run, history);
          run = 0;
        }
        addHistory(run + n, history);
        score += finderLike(history) * 40;
      };
      for (let y = 0; y < n; y++) line((x) => this.dark[y][x]);
      for (let x = 0; x < n; x++) line((y) => this.dark[y][x]);
      let dark = 0;
      for (let y = 0; y < n; y++) {
        for (let x = 0; x < n; x++) {
          const c = this.dark[y][x];
          if (c) dark++;
          if (x < n - 1 && y < n - 1 && c === this.dark[y][x + 1] && c === this.dark[y + 1][x] && c === this.dark[y + 1][x + 1]) score += 3;
        }
      }
      const total = n * n;
      score += (Math.ceil(Math.abs(dark * 20 - total * 10) / total) - 1) * 10;
      return score;
    }
  }

  // The modules of the QR code of `text` (UTF-8), smallest version, best mask (or `mask`):
  // {version, mask, size, dark: rows of booleans}. Throws past what version 40 holds.
  function qr(text, mask = null) {
    const bytes = Array.from(new TextEncoder().encode(text));
    const utf8 = bytes.some((b) => b > 0x7f);
    let ver = 1;
    while (ver <= 40 && headerBits(ver, utf8) + bytes.length * 8 > dataCodewords(ver) * 8) ver++;
    if (ver > 40) throw new Error(`too much data for a QR code: ${bytes.length} bytes`);
    const words = codewords(bytes, ver, utf8);
    const build = (m) => {
      const s = new QrSymbol(ver);
      s.drawPatterns();
      s.drawCodewords(words);
      s.applyMask(m);
      s.drawFormat(m);
      return s;
    };
    let best = null;
    let bestMask = 0;
    for (let m = 0; m < 8; m++) {
      if (mask !== null && m !== mask) continue;
      const s = build(m);
      const p = mask !== null ? 0 : s.penalty();
      if (!best || p < best.p) {
        best = { s, p };
        bestMask = m;
      }
    }
    return { version: ver, mask: bestMask, size: best.s.size, dark: best.s.dark };
  }

  // ---- barcodes ------------------------------------------------------------------------------
  // Code 128 symbols 0 to 106 as bar/space widths (106 is the stop, with its final bar).
  const CODE128 = [
    '212222', '222122', '222221', '121223', '121322', '131222', '122213', '122312', '132212',
    '221213', '221312', '231212', '112232', '122132', '122231', '113222', '123122', '123221',
    '223211', '221132', '221231', '213212', '223112', '312131', '311222', '321122', '321221',
    '312212', '322112', '322211', '212123', '212321', '232121', '111323', '131123', '131321',
    '112313', '132113', '132311', '211313', '231113', '231311', '112133', '112331', '132131',
    '113123', '113321', '133121', '313121', '211331', '231131', '213113', '213311', '213131',
    '311123', '311321', '331121', '312113', '312311', '332111', '314111', '221411', '431111',
    '111224', '111422', '121124', '121421', '141122', '141221', '112214', '112412', '122114',
    '122411', '142112', '142211', '241211', '221114', '413111', '241112', '134111', '111242',
    '121142', '121241', '114212', '124112', '124211', '411212', '421112', '421211', '212141',
    '214121', '412121', '111143', '111341', '131141', '114113', '114311', '411113', '411311',
    '113141', '114131', '311141', '411131', '211412', '211214', '211232', '2331112',
  ];
  const CODE128_START_B = 104;
  const CODE128_STOP = 106;

  // Modules of a Code 128 barcode (code set B: printable ASCII) as a string of 1 (bar) and
  // 0 (space), without the quiet zones.
  function code128(text) {
    const values = Array.from(text, (ch) => {
      const c = ch.charCodeAt(0);
      if (ch.length !== 1 || c < 32 || c > 126) throw new Error('code128 takes printable ASCII');
      return c - 32;
    });
    let sum = CODE128_START_B;
    values.forEach((v, i) => { sum += v * (i + 1); });
    const symbols = [CODE128_START_B, ...values, sum % 103, CODE128_STOP];
    let out = '';
    for (const s of symbols) {
      Array.from(CODE128[s]).forEach((w, i) => { out += (i % 2 === 0 ? '1' : '0').repeat(Number(w)); });
    }
    return out;
  }

  const EAN_L = ['0001101', '0011001', '0010011', '0111101', '0100011', '0110001', '0101111',
    '0111011', '0110111', '0001011'];
  const EAN_PARITY = ['LLLLLL', 'LLGLGG', 'LLGGLG', 'LLGGGL', 'LGLLGG', 'LGGLLG', 'LGGGLL',
    'LGLGLG', 'LGLGGL', 'LGGLGL'];
  const invert = (bits) => Array.from(bits, (b) => (b === '1' ? '0' : '1')).join('');
  const reverse = (bits) => Array.from(bits).reverse().join('');

  function ean13CheckDigit(first12) {
    const sum = first12.reduce((a, d, i) => a + (i % 2 === 0 ? d : d * 3), 0);
    return (10 - (sum % 10)) % 10;
  }
  // Modules of an EAN-13 (12 digits, or 13 with their check digit) and the 13 digits, as
  // {modules, digits}.
  function ean13(text) {
    if (!/^[0-9]{12,13}$/.test(text)) throw new Error('ean13 is 12 or 13 digits');
    const d = Array.from(text, Number);
    if (d.length === 12) d.push(ean13CheckDigit(d));
    else if (ean13CheckDigit(d.slice(0, 12)) !== d[12]) throw new Error('wrong ean13 check digit');
    let out = '101';
    for (let i = 1; i <= 6; i++) {
      out += EAN_PARITY[d[0]][i - 1] === 'L' ? EAN_L[d[i]] : reverse(invert(EAN_L[d[i]]));
    }
    out += '01010';
    for (let i = 7; i <= 12; i++) out += invert(EAN_L[d[i]]);
    out += '101';
    return { modules: out, digits: d.join('') };
  }

  // ---- SVG -----------------------------------------------------------------------------------
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svgElement(name, attributes) {
    const e = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, String(v));
    return e;
  }
  // A symbol's dark modules as one path, `quiet` modules of white around it.
  function symbolSvg(width, height, pathData, label) {
    const svg = svgElement('svg', {
      viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label,
      'shape-rendering': 'crispEdges',
    });
    svg.append(svgElement('rect', { width, height, fill: '#fff' }));
    svg.append(svgElement('path', { d: pathData, fill: '#000' }));
    return svg;
  }
  function qrSvg(text, label) {
    const q = qr(text);
    const quiet = 4;
    let d = '';
    q.dark.forEach((row, y) => row.forEach((dark, x) => {
      if (dark) d += `M${x + quiet} ${y + quiet}h1v1h-1z`;
    }));
    const svg = symbolSvg(q.size + 2 * quiet, q.size + 2 * quiet, d, label);
    svg.dataset.version = String(q.version);
    svg.dataset.mask = String(q.mask);
    return svg;
  }
  // Bars `height` modules high between quiet zones; drawn two pixels a module, as a printer
  // draws whole dots (scaled, uneven bars read badly), unless the paper is narrower.
  function barsSvg(modules, height, quietLeft, quietRight, label) {
    let d = '';
    let x = 0;
    while (x < modules.length) {
      if (modules[x] !== '1') { x++; continue; }
      let w = 1;
      while (modules[x + w] === '1') w++;
      d += `M${x + quietLeft} 0h${w}v${height}h-${w}z`;
      x += w;
    }
    const width = quietLeft + modules.length + quietRight;
    const svg = symbolSvg(width, height, d, label);
    svg.setAttribute('width', String(width * 2));
    svg.setAttribute('height', String(height * 2));
    return svg;
  }
  // A barcode of `symbology` (`code128`, `ean13`) as SVG; throws on data it cannot encode.
  function barcodeSvg(symbology, data) {
    if (symbology === 'ean13') {
      const e = ean13(data);
      return barsSvg(e.modules, 60, 11, 7, `EAN-13 barcode ${e.digits}`);
    }
    if (symbology === 'code128') return barsSvg(code128(data), 40, 10, 10, `Code 128 barcode ${data}`);
    throw new Error(`unknown symbology ${symbology}`);
  }

  return { qr, code128, ean13, qrSvg, barcodeSvg };
})();

if (typeof module !== 'undefined') module.exports = EftcloudCodes;
