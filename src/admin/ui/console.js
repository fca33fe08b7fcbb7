// pproxy operator console (docs/CONSOLE.md). Plain modern JavaScript, no framework, no build.
//
// Every value that comes from the server or the address bar enters the page as text
// (Node.append / textContent / createTextNode), never as markup: message ids, topics and keys
// are client-controlled. URLs are built relative to the page, so TLS and path prefixes work.
'use strict';

(() => {
  const REFRESH_MS = 5000;
  const TOKEN_KEY = 'pproxy.adminToken';
  // The server renders data-ui as the relative path from this page to /ui/.
  const uiRoot = new URL(document.body.dataset.ui || './', location.href);
  const apiRoot = new URL('../', uiRoot);

  const CODES = {
    0: 'OK', 10: 'failed', 11: 'too large or illegal', 12: 'send timeout',
    13: 'not in white list', 14: 'topic does not exist', 15: 'rate limited',
    18: 'topic is not delay', 19: 'topic is delay', 20: 'shutting down',
    21: 'no producer for cluster', 30: 'illegal delay id', 31: 'illegal dMsgType',
    32: 'illegal delay action', 33: 'illegal timestamp', 34: 'illegal innerTopicSeq',
    35: 'illegal loopTimes', 36: 'illegal expire', 37: 'illegal interval',
    38: 'illegal exponent base',
  };
  const TYPES = { 2: 'one-shot', 3: 'loop, fixed interval', 4: 'loop, exponential' };
  const STATE_CLASS = {
    pending: 'warn', firing: 'warn', retrying: 'bad', fired: 'good', completed: 'good',
    cancelled: 'muted', dead: 'bad', unknown: 'muted',
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM helpers (text only)
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }
  const row = (...cells) => el('tr', null, ...cells);
  const td = (v, cls) => el('td', { class: cls }, v);
  const num = (v) => td(v, 'num');
  function kv(tbody, pairs) {
    tbody.replaceChildren(...pairs.filter((p) => p).map(([k, v]) => row(el('th', null, k), td(v))));
  }
  function empty(tbody, cols, text) {
    tbody.replaceChildren(row(el('td', { colspan: cols, class: 'muted' }, text)));
  }
  function stateBadge(s) {
    return el('span', { class: 'state ' + (STATE_CLASS[s] || '') }, s);
  }
  function codeText(c) {
    return CODES[c] !== undefined ? CODES[c] : '';
  }
  function fmtNum(v, digits = 0) {
    if (typeof v !== 'number' || !isFinite(v)) return '—';
    return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }
  function fmtTime(ms) {
    if (!ms) return '—';
    const d = new Date(ms);
    const delta = (ms - Date.now()) / 1000;
    const rel = Math.abs(delta) < 1 ? 'now' : (delta > 0 ? 'in ' + fmtDur(delta) : fmtDur(-delta) + ' ago');
    return d.toISOString().replace('T', ' ').replace('Z', ' UTC') + ' (' + rel + ')';
  }
  function fmtDur(s) {
    if (s < 1) return fmtNum(s * 1000) + ' ms';
    if (s < 120) return fmtNum(s, s < 10 ? 1 : 0) + ' s';
    if (s < 7200) return fmtNum(s / 60, 1) + ' min';
    if (s < 172800) return fmtNum(s / 3600, 1) + ' h';
    return fmtNum(s / 86400, 1) + ' d';
  }
  function fmtLe(le) {
    if (le === null) return '+Inf';
    return le < 1 ? fmtNum(le * 1000) + 'ms' : fmtNum(le) + 's';
  }
  function uiHref(path) {
    return new URL(path, uiRoot).href;
  }
  function delayHref(id) {
    return uiHref('delay/' + encodeURIComponent(id));
  }

  // ------------------------------------------------------------------ admin API
  class AuthNeeded extends Error {}

  async function call(path, method = 'GET') {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    // The admin port refuses browser POSTs without it (docs/SECURITY.md, cross-site requests).
    if (method !== 'GET') headers['X-Pproxy-Console'] = '1';
    const r = await fetch(new URL(path, apiRoot), {
      method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error',
    });
    const text = await r.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) { /* not JSON: keep the text */ }
    if (r.status === 401) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      $('auth').hidden = false;
      throw new AuthNeeded('token needed');
    }
    return { status: r.status, ok: r.ok, body, headers: r.headers };
  }

  function showError(e) {
    const box = $('error');
    if (!e) { box.hidden = true; return; }
    if (e instanceof AuthNeeded) return;
    box.hidden = false;
    box.textContent = 'Cannot reach the admin port: ' + (e && e.message ? e.message : String(e));
  }

  // ------------------------------------------------------------------ routing
  let view = 'overview';
  let lookupId = '';

  function parseLocation() {
    const rest = location.pathname.startsWith(uiRoot.pathname)
      ? location.pathname.slice(uiRoot.pathname.length) : '';
    if (rest === 'dead') return ['dead', ''];
    if (rest === 'cluster') return ['cluster', ''];
    if (rest === 'delay') return ['delay', ''];
    if (rest.startsWith('delay/')) {
      let id = rest.slice('delay/'.length);
      try { id = decodeURIComponent(id); } catch (_) { /* keep the raw text */ }
      return ['delay', id];
    }
    return ['overview', ''];
  }

  function go(href, push) {
    if (push) history.pushState(null, '', href);
    [view, lookupId] = parseLocation();
    for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== 'view-' + view;
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
    if (view === 'delay') $('lookup-id').value = lookupId;
    if (view === 'delay' && !lookupId) $('lookup-result').replaceChildren();
    refresh();
  }

  // ------------------------------------------------------------------ overview
  let previous = null; // the last summary, for rates
  let lastStatus = null;

  function rate(cur, prev, key, map) {
    if (!prev) return NaN;
    const dt = (cur.atMs - prev.atMs) / 1000;
    if (dt <= 0) return NaN;
    return Math.max(0, ((cur[map][key] || 0) - ((prev[map] || {})[key] || 0)) / dt);
  }

  function rateRows(tbody, summary, map, withMeaning) {
    const keys = Object.keys(summary[map] || {}).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
    if (!keys.length) { empty(tbody, withMeaning ? 4 : 3, 'nothing yet'); return; }
    tbody.replaceChildren(...keys.map((k) => {
      const cls = k === '0' || k === 'ok' ? 'good' : (k === 'retry' ? 'warn' : 'bad');
      const cells = [td(k, cls)];
      if (withMeaning) cells.push(td(codeText(k)));
      cells.push(num(fmtNum(rate(summary, previous, k, map), 2)), num(fmtNum(summary[map][k])));
      return row(...cells);
    }));
  }

  function renderStatus(s) {
    lastStatus = s;
    $('node-name').textContent = (s.node || '') + ' · ' + (s.mode || '');
    document.title = 'pproxy ' + (s.node || '') + ' — console';
    kv($('node-kv'), [
      ['node', s.node], ['mode', s.mode], ['version', s.version],
      ['config source', s.configSource], ['config generation', s.configGeneration],
      s.zkConnected !== undefined ? ['ZooKeeper connected', String(s.zkConnected)] : null,
      s.embeddedBootstrap ? ['embedded bootstrap', s.embeddedBootstrap] : null,
      ['uptime', fmtDur(s.uptimeSec || 0)], ['connections', s.connections],
      ['in-flight requests', s.inflightRequests], ['draining', String(!!s.draining)],
    ]);
    const sch = s.scheduler;
    if (sch) {
      kv($('delay-kv'), [
        ['pending', fmtNum(sch.pending)], ['loaded (in the wheel)', fmtNum(sch.loaded)],
        ['in flight', fmtNum(sch.inflight)], ['dead letters', fmtNum(sch.dead)],
        ['fired-through lag', fmtDur((sch.firedThroughLagMs || 0) / 1000)],
        ['store', sch.storeFailed ? el('span', { class: 'bad' }, 'FAILED') :
          (sch.storeStuckMs ? el('span', { class: 'warn' }, 'stuck ' + fmtDur(sch.storeStuckMs / 1000)) :
            el('span', { class: 'good' }, 'ok'))],
        ['store reopens', sch.storeReopens],
      ]);
    } else {
      kv($('delay-kv'), [['scheduler', s.mode === 'zookeeper' || s.mode === 'local'
        ? 'cluster mode or not open: see Cluster' : 'not open']]);
    }
    // Broker clusters: name, type, producer and whatever writer figures the cluster reports.
    const clusters = Object.entries(s.clusters || {});
    const extra = [...new Set(clusters.flatMap(([, c]) => Object.keys(c.writer || {})))];
    $('clusters-head').replaceChildren(row(...['cluster', 'type', 'producer', ...extra].map((h) => el('th', null, h))));
    if (!clusters.length) empty($('clusters'), 3 + extra.length, 'no clusters');
    else {
      $('clusters').replaceChildren(...clusters.map(([name, c]) => row(
        td(name), td(c.type), td(c.producer ? 'up' : 'none', c.producer ? 'good' : 'bad'),
        ...extra.map((k) => td(c.writer && c.writer[k] !== undefined ? String(c.writer[k]) : '')))));
    }
    const topics = s.topics || [];
    $('topics-head').replaceChildren(row(...['topic', 'clusters', 'delay', 'auto batch', 'strong order',
      'size limit', 'max TPS'].map((h) => el('th', null, h))));
    if (!topics.length) empty($('topics'), 7, 'no topic admitted yet');
    else {
      $('topics').replaceChildren(...topics.map((t) => row(
        td(t.topic, 'mono'), td((t.clusters || []).join(', ')), td(t.delayTopic ? 'yes' : ''),
        td(t.autoBatch ? 'yes' : ''), td(t.strongOrder ? 'yes' : ''),
        num(t.sizeLimit ? fmtNum(t.sizeLimit) : '—'), num(t.maxTps ? fmtNum(t.maxTps) : '—'))));
    }
    $('topics-note').textContent = s.mode === 'embedded'
      ? 'Embedded mode admits every valid topic on first use.' : '';
  }

  function renderSummary(sum) {
    rateRows($('requests-rates'), sum, 'requestsByCode', true);
    rateRows($('messages-rates'), sum, 'messagesByCode', true);
    rateRows($('fire-rates'), sum, 'firesByResult', false);
    renderLateness(sum.lateness || {});
    previous = sum;
  }

  // The lateness histogram as bars, one per bucket (counts since start), drawn in SVG.
  function renderLateness(h) {
    const SVG = 'http://www.w3.org/2000/svg';
    const les = h.le || [], cum = h.cumulative || [];
    const counts = cum.map((c, i) => c - (i ? cum[i - 1] : 0));
    const W = 600, H = 200, pad = 26, n = Math.max(counts.length, 1);
    const max = Math.max(1, ...counts);
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', 'fire lateness histogram');
    const bw = (W - 2) / n;
    const base = document.createElementNS(SVG, 'line');
    for (const [k, v] of Object.entries({ x1: 0, x2: W, y1: H - pad, y2: H - pad })) base.setAttribute(k, v);
    svg.append(base);
    counts.forEach((c, i) => {
      const bh = ((H - pad - 20) * c) / max;
      const r = document.createElementNS(SVG, 'rect');
      for (const [k, v] of Object.entries({ x: 1 + i * bw + 1, y: H - pad - bh, width: Math.max(bw - 2, 1), height: bh })) r.setAttribute(k, v);
      const title = document.createElementNS(SVG, 'title');
      title.textContent = '≤ ' + fmtLe(les[i]) + ': ' + c;
      r.append(title);
      svg.append(r);
      if (c > 0) {
        const t = document.createElementNS(SVG, 'text');
        t.setAttribute('x', 1 + i * bw + bw / 2); t.setAttribute('y', H - pad - bh - 3);
        t.setAttribute('text-anchor', 'middle');
        t.textContent = String(c);
        svg.append(t);
      }
      if (i % 2 === 0 || n <= 10) {
        const t = document.createElementNS(SVG, 'text');
        t.setAttribute('x', 1 + i * bw + bw / 2); t.setAttribute('y', H - 6);
        t.setAttribute('text-anchor', 'middle');
        t.textContent = fmtLe(les[i]);
        svg.append(t);
      }
    });
    $('lateness').replaceChildren(svg);
    const total = h.count || 0;
    let note = total ? fmtNum(total) + ' fires, mean ' + fmtDur((h.sum || 0) / total) : 'no fire yet';
    if (total) {
      const i = cum.findIndex((c) => c >= 0.99 * total);
      if (i >= 0) note += ', p99 ≤ ' + fmtLe(les[i]);
    }
    $('lateness-note').textContent = note + ' (hand-off time − due time, since start)';
  }

  // ------------------------------------------------------------------ delay lookup
  function deadActions(id, k, after) {
    const redrive = el('button', { type: 'button', class: 'redrive', 'data-id': id, 'data-k': k }, 'Re-drive');
    const purge = el('button', { type: 'button', class: 'danger purge', 'data-id': id, 'data-k': k }, 'Purge');
    redrive.addEventListener('click', () => act(id, k, 'redrive', after));
    // Two clicks: no modal dialog to block the page.
    purge.addEventListener('click', () => {
      if (purge.dataset.armed) { act(id, k, 'purge', after); return; }
      purge.dataset.armed = '1';
      purge.textContent = 'Confirm purge';
      setTimeout(() => { delete purge.dataset.armed; purge.textContent = 'Purge'; }, 4000);
    });
    return el('td', { class: 'actions' }, redrive, purge);
  }

  async function act(id, k, action, after) {
    const out = $('dead-outcome');
    try {
      const r = await call('delay/dead/' + encodeURIComponent(id) + '/' + encodeURIComponent(k) + '/' + action, 'POST');
      const b = r.body || {};
      let text;
      if (!r.ok) text = action + ' of ' + id + ' #' + k + ' refused (' + r.status + '): ' + (b.error || JSON.stringify(b));
      else if (action === 'redrive') text = 're-driven ' + id + ' #' + k + ': code ' + b.code + ' ' + (b.msg || '');
      else text = 'purged ' + id + ' #' + k;
      for (const box of [out, $('lookup-outcome')]) {
        if (!box) continue;
        box.hidden = false;
        box.className = 'banner ' + (r.ok && (b.code === undefined || b.code === 0) ? 'good' : 'bad');
        box.textContent = text;
      }
    } catch (e) {
      showError(e);
    }
    after();
  }

  async function lookup(id) {
    const box = $('lookup-result');
    if (!id) { box.replaceChildren(); return; }
    const r = await call('delay/' + encodeURIComponent(id));
    const d = r.body;
    if (!r.ok || typeof d !== 'object') {
      box.replaceChildren(el('div', { class: 'card bad' }, 'Lookup of ', el('code', null, id), ' failed (' + r.status + '): ' + (d && d.error ? d.error : String(d))));
      return;
    }
    const loop = d.type === 3 || d.type === 4;
    const fields = [
      ['id', el('code', { id: 'lookup-shown-id' }, d.id)],
      d.canonicalId !== d.id ? ['canonical id', el('code', null, d.canonicalId)] : null,
      ['state', el('span', { id: 'lookup-state' }, stateBadge(d.state))],
      ['topic', d.topic !== undefined ? el('code', null, d.topic) : '—'],
      ['type', d.type !== null && d.type !== undefined ? d.type + ' (' + (TYPES[d.type] || '?') + ')' : '—'],
      d.owner ? ['added by', d.owner] : null,
      ['next due', d.nextDueMs ? fmtTime(d.nextDueMs) : '—'],
      ['next occurrence', d.nextOccurrenceId ? el('code', null, d.nextOccurrenceId) : '—'],
      // nextIndex is the 0-based index of the next occurrence: as many have fired (or been
      // skipped by catch-up) before it.
      loop && d.nextIndex !== undefined ? ['loop progress', d.nextIndex + ' of ' + (d.times ?? '—') +
        ' fired' + (d.remainingLoops !== undefined ? ', ' + d.remainingLoops + ' to go' : '')] : null,
      loop ? ['interval / expire', (d.interval ?? '—') + ' s / ' + (d.expire ? fmtTime(d.expire * 1000) : '—')] : null,
      d.attempts !== undefined ? ['fire attempts', d.attempts] : null,
      d.lastCode !== undefined ? ['last result', d.lastCode + ' ' + (d.lastMsg || '')] : null,
      d.finishedMs ? ['finished', fmtTime(d.finishedMs)] : null,
      d.lastIndex !== undefined ? ['last occurrence', d.lastIndex] : null,
    ];
    const table = el('tbody');
    kv(table, fields);
    const parts = [el('div', { class: 'card' }, el('h2', null, 'Delay message'), el('table', { class: 'kv' }, table))];
    const cancels = d.cancelRequests || [];
    if (cancels.length) {
      const tb = el('tbody', null, ...cancels.map((c) => row(td(fmtTime(c.atMs)), td(c.result))));
      parts.push(el('div', { class: 'card' }, el('h2', null, 'Cancel requests'),
        el('table', null, el('thead', null, row(el('th', null, 'at'), el('th', null, 'result'))), tb)));
    }
    const dead = d.deadLetters || [];
    if (dead.length) {
      const tb = el('tbody', null, ...dead.map((x) => row(num(x.k), td(x.code + ' ' + codeText(x.code)), td(x.msg),
        td(fmtTime(x.deadMs)), deadActions(d.canonicalId || d.id, x.k, refresh))));
      parts.push(el('div', { class: 'card' }, el('h2', null, 'Dead letters'),
        el('div', { id: 'lookup-outcome', class: 'banner', hidden: '' }),
        el('table', null, el('thead', null, row(...['k', 'code', 'message', 'dead since', ''].map((h) => el('th', null, h)))), tb)));
    }
    // Keep an outcome banner shown across the refresh that follows an action.
    const old = $('lookup-outcome');
    box.replaceChildren(...parts);
    const fresh = $('lookup-outcome');
    if (old && fresh && !old.hidden) { fresh.hidden = false; fresh.className = old.className; fresh.textContent = old.textContent; }
  }

  // ------------------------------------------------------------------ dead letters
  async function loadDead() {
    const topic = $('dead-topic').value.trim();
    const limit = Number($('dead-limit').value) || 100;
    let q = 'delay/dead?limit=' + encodeURIComponent(limit);
    if (topic) q += '&topic=' + encodeURIComponent(topic);
    const r = await call(q);
    const list = $('dead-list');
    if (!r.ok || !Array.isArray(r.body)) {
      empty(list, 8, 'cannot list dead letters (' + r.status + '): ' + (r.body && r.body.error ? r.body.error : String(r.body)));
      $('dead-count').textContent = '';
      return;
    }
    // Cluster mode: a member that did not answer is named, never silently left out.
    const missing = r.headers.get('X-Pproxy-Incomplete');
    $('dead-count').textContent = r.body.length + ' shown' + (topic ? ' for topic ' + topic : '') +
      (missing ? ' (incomplete: ' + missing + ')' : '');
    if (!r.body.length) { empty(list, 8, topic ? 'no dead letters for topic ' + topic : 'no dead letters'); return; }
    list.replaceChildren(...r.body.map((x) => el('tr', { 'data-id': x.id, 'data-k': x.k },
      el('td', null, el('a', { href: delayHref(x.id), class: 'mono internal' }, x.id)),
      num(x.k), td(x.topic, 'mono nowrap'), td(x.key, 'mono'), td(x.code + ' ' + codeText(x.code)), td(x.msg),
      td(fmtTime(x.deadMs)), deadActions(x.id, x.k, refresh))));
  }

  // ------------------------------------------------------------------ cluster
  async function loadCluster() {
    const body = $('cluster-body');
    const s = lastStatus || (await call('status')).body;
    if (s && s.scheduler) {
      body.replaceChildren(el('p', { class: 'muted' }, 'Cluster mode is off: this node runs one scheduler (see Overview).'));
      return;
    }
    const r = await call('delay/cluster');
    if (!r.ok) {
      body.replaceChildren(el('p', { class: 'muted' }, (r.body && r.body.error) || ('status ' + r.status)));
      return;
    }
    const c = r.body;
    const info = el('tbody');
    kv(info, [['node', c.node], ['advertised admin', c.admin], ['group', c.group],
      ['journal topic', c.journalTopic], ['journal partitions', c.journalPartitions],
      ['owned here', (c.partitions || []).length]]);
    const parts = (c.partitions || []).map((p) => row(num(p.partition), td(c.node), num(p.epoch),
      td(p.state, p.state === 'active' ? 'good' : 'warn'), num(fmtNum(p.pending)), num(fmtNum(p.loaded)),
      num(p.firedThroughLagMs !== undefined ? fmtDur(p.firedThroughLagMs / 1000) : '—')));
    const tb = el('tbody', null, ...parts);
    if (!parts.length) empty(tb, 7, 'no partition owned by this node');
    body.replaceChildren(el('table', { class: 'kv' }, info),
      el('table', null, el('thead', null, row(...['partition', 'owner', 'epoch', 'state', 'pending', 'loaded', 'fired-through lag']
        .map((h) => el('th', { class: h === 'owner' || h === 'state' ? '' : 'num' }, h)))), tb),
      el('p', { class: 'muted' }, 'Partitions owned by other nodes are shown by their own consoles; dead letters of every node are listed under Dead letters.'));
  }

  // ------------------------------------------------------------------ refresh loop
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const st = await call('status');
      if (st.ok) renderStatus(st.body);
      if (view === 'overview') {
        const sum = await call('ui/api/summary');
        if (sum.ok) renderSummary(sum.body);
      } else if (view === 'delay') {
        await lookup(lookupId);
      } else if (view === 'dead') {
        await loadDead();
      } else if (view === 'cluster') {
        await loadCluster();
      }
      // The token form stays until a token is given: reads may be open while mutations are not.
      showError(null);
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      showError(e);
    } finally {
      busy = false;
    }
  }

  // ------------------------------------------------------------------ wiring
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    if (!(a.dataset.view || a.classList.contains('internal'))) return;
    ev.preventDefault();
    go(a.href, true);
  });
  window.addEventListener('popstate', () => go(location.href, false));
  $('lookup').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('lookup-id').value.trim();
    go(id ? delayHref(id) : uiHref('delay'), true);
  });
  $('dead-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    refresh();
  });
  $('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('auth-token').value);
    $('auth-token').value = '';
    $('auth').hidden = true;
    refresh();
  });
  go(location.href, false);
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
})();
