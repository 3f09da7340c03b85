// The admin web console's page, served at /console (ConsoleRoutes.swift). One
// self-contained document: no external assets, no frameworks. The inline <style> and
// <script> are allowed by their SHA-256 in the Content-Security-Policy, computed from
// these strings at start, so editing them needs nothing else. The script builds every
// piece of data into the DOM with createElement/textContent only, never as markup.
// (Raw string literals: backslashes are literal; keep the text free of the raw-string
// delimiter.)

enum ConsolePage {
    static let style = #"""
:root{--bg:#f5f6f8;--fg:#1d2330;--muted:#5f6b7a;--line:#d9dde3;--card:#fff;--accent:#0b5cad;--ok:#1a7f37;--warn:#9a6700;--bad:#c62828;--off:#57606a;color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;align-items:center;gap:16px;padding:8px 16px;background:#1d2330;color:#fff}
header .brand{font-weight:600;letter-spacing:.2px}
header nav{display:flex;gap:4px;flex:1}
header nav button{background:transparent;color:#c9d1d9;border:0;padding:6px 10px;border-radius:4px;cursor:pointer;font:inherit}
header nav button[aria-current="page"]{background:#39414f;color:#fff}
header .who{color:#c9d1d9;font-size:12px}
main{padding:16px;max-width:1400px;margin:0 auto}
h1{font-size:18px;margin:0 0 12px}
h2{font-size:16px;margin:0 0 8px}
h3{font-size:14px;margin:16px 0 6px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:12px 14px;margin:0 0 12px}
.row{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.spacer{flex:1}
.muted{color:var(--muted)}
.small{font-size:12px}
.mono,code,textarea,input.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;white-space:nowrap}
tr.sel td{background:#eaf2fb}
tr.click{cursor:pointer}
tr.click:hover td{background:#f3f7fc}
button,.btn{font:inherit;padding:5px 12px;border:1px solid var(--line);background:#fff;border-radius:4px;cursor:pointer;color:var(--fg)}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
button:disabled{opacity:.55;cursor:default}
button.link{border:0;background:none;color:var(--accent);padding:0;text-align:left}
button.link:hover{text-decoration:underline}
input,select,textarea{font:inherit;padding:5px 8px;border:1px solid var(--line);border-radius:4px;background:#fff;color:var(--fg)}
input.num{width:90px}
label{display:flex;flex-direction:column;gap:2px;font-size:12px;color:var(--muted)}
label>input,label>select{color:var(--fg);font-size:14px;min-width:220px}
textarea{width:100%;min-height:360px;resize:vertical}
textarea.short{min-height:90px;min-width:300px;width:auto;color:var(--fg)}
button.danger{color:var(--bad);border-color:#f5c2c0}
label.check{flex-direction:row;align-items:center;gap:6px;font-size:14px;color:var(--fg)}
label.check>input{min-width:0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--off);white-space:nowrap}
.b-healthy{background:var(--ok)}.b-warning{background:#d4a72c;color:#1d2330}.b-unhealthy{background:var(--bad)}
.b-offline{background:#24292f}.b-unknown,.b-informational,.b-notMeasured{background:#8c959f}.b-upgradeInProgress,.b-upgradeFailed{background:#6f42c1}
.b-pending{background:#8c959f}.b-completed{background:var(--ok)}.b-failed{background:var(--bad)}
.err{background:#fdecea;border:1px solid #f5c2c0;color:#8a1c1c;padding:8px 10px;border-radius:4px;white-space:pre-wrap;word-break:break-word;margin:8px 0}
.ok{background:#e9f6ec;border:1px solid #b7e1c1;color:#14532d;padding:8px 10px;border-radius:4px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}
.metric{border:1px solid var(--line);border-radius:4px;padding:6px 8px}
.metric .v{font-size:16px;font-weight:600}
.spark polyline{fill:none;stroke:var(--accent);stroke-width:1.5;vector-effect:non-scaling-stroke}
.spark line{stroke:var(--line);vector-effect:non-scaling-stroke}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
.kv dt{color:var(--muted)}.kv dd{margin:0}
.split{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,3fr);gap:12px;align-items:start}
@media (max-width:1000px){.split{grid-template-columns:1fr}}
#signin{max-width:520px;margin:60px auto}
#signin input{width:100%}
.token{flex:1;min-width:0}
td.nw{white-space:nowrap}
.scroll{max-height:420px;overflow:auto}
[hidden]{display:none!important}
"""#

    static let body = #"""
<header>
<span class="brand">mstunnel-control</span>
<nav id="nav" hidden>
<button type="button" data-view="sites" aria-current="page">Sites &amp; servers</button>
<button type="button" data-view="configs">Server configurations</button>
<button type="button" data-view="thresholds">Health thresholds</button>
</nav>
<span class="spacer"></span>
<span class="who" id="who"></span>
<button type="button" id="signout" hidden>Sign out</button>
</header>
<main>
<section id="signin" class="card" hidden>
<h1>Sign in</h1>
<p class="muted small">Paste the local admin token (<code>mstunnel-control admin-token --state-dir DIR</code>) or an admin JWT. It is kept in this tab's session storage only and sent as <code>Authorization: Bearer</code> to the admin API.</p>
<form id="signin-form" autocomplete="off">
<label>Admin token<input id="signin-token" type="password" class="mono" required spellcheck="false" autocomplete="off"></label>
<div class="row"><button type="submit" class="primary">Sign in</button></div>
</form>
<div id="signin-msg"></div>
</section>
<section id="view-sites" hidden>
<div class="row"><h1>Sites &amp; servers</h1><span class="spacer"></span><span class="muted small" id="sites-updated"></span><button type="button" id="sites-refresh">Refresh</button><button type="button" id="site-new" class="primary">New site</button></div>
<div id="site-create" class="card" hidden></div>
<div id="sites-msg"></div>
<div class="split"><div id="sites-list"></div><div id="server-detail"></div></div>
</section>
<section id="view-configs" hidden>
<div class="row"><h1>Server configurations</h1><span class="spacer"></span><button type="button" id="configs-refresh">Refresh</button><button type="button" id="config-new" class="primary">New configuration</button></div>
<div id="configs-msg"></div>
<div class="split"><div id="configs-list" class="card"></div><div id="config-editor"></div></div>
</section>
<section id="view-thresholds" hidden>
<div class="row"><h1>Health thresholds</h1><span class="spacer"></span><button type="button" id="thresholds-refresh">Refresh</button></div>
<div id="thresholds-msg"></div>
<div id="thresholds-list" class="card"></div>
</section>
</main>
"""#

    static let script = #"""
'use strict';
(() => {
// The admin console. Every datum comes from the /beta admin API and is put on the page
// with textContent / createElement only: agent-reported values (host names, user names,
// messages) are attacker-influenced and never parsed as markup.
const API = '/beta/deviceManagement';
const TOKEN_KEY = 'mstunnel-control.adminToken';
const REFRESH_MS = 15000;
const SERIES = [
  ['cpuUsage', 'CPU', '%'], ['memoryUsage', 'Memory', '%'],
  ['currentConnections', 'Connections', ''], ['throughput', 'Throughput', 'B/s'],
];
const UNITS = {
  cpuUsage: '%', memoryUsage: '%', diskSpace: 'GB free', latency: 'ms', throughput: 'B/s', currentConnections: 'sessions',
  addressPoolUsage: '%', tlsCertificateExpiry: 'days', internalNetworkProbe: '(1 = ok)', gatewayReachable: '(1 = ok)', malformedInput: 'since start',
  appliedConfigurationVersion: '',
};
// What an admin reads instead of the API's identifiers (checks and metrics share ids).
const NAMES = {
  lastCheckin: 'Last check-in', healthReport: 'Health report', cpuUsage: 'CPU usage', memoryUsage: 'Memory usage',
  diskSpace: 'Free disk space', latency: 'Latency through the gateway', addressPoolUsage: 'Address pool usage',
  tlsCertificateExpiry: 'TLS certificate expiry', currentConnections: 'Connected sessions', throughput: 'Throughput',
  tlsCertificate: 'TLS certificate', agentCertificate: 'Agent certificate', internalNetworkProbe: 'Internal network probe',
  serverConfiguration: 'Server configuration applied', gateway: 'Gateway container', versionCurrency: 'Version currency',
  gatewayReachable: 'Gateway reachable', appliedConfigurationVersion: 'Applied configuration version',
  refusedInput: 'Refused input', malformedInput: 'Malformed input dropped',
};
function label(id) { return NAMES[id] || String(id); }
const STATUSES = ['healthy', 'warning', 'unhealthy', 'offline', 'unknown', 'informational', 'notMeasured',
  'upgradeInProgress', 'upgradeFailed', 'pending', 'completed', 'failed'];

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ---- DOM building (no markup parsing anywhere)
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}
function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}
function show(el, ...children) { el.replaceChildren(); append(el, children); }

// ---- formatting
function str(v) { return v === undefined || v === null || v === '' ? '—' : String(v); }
function badge(status) {
  const s = STATUSES.includes(status) ? status : 'unknown';
  return h('span', { class: 'badge b-' + s, text: status || 'unknown' });
}
function relTime(iso) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((Date.now() - t) / 1000);
  const a = Math.abs(s);
  const u = a < 60 ? [a, 's'] : a < 3600 ? [Math.floor(a / 60), 'min'] : a < 86400 ? [Math.floor(a / 3600), 'h'] : [Math.floor(a / 86400), 'd'];
  return s >= 0 ? u[0] + ' ' + u[1] + ' ago' : 'in ' + u[0] + ' ' + u[1];
}
function timeCell(iso) { return h('td', { class: 'nw', title: iso || '', text: relTime(iso) }); }
function localTime(iso) {
  const t = Date.parse(iso || '');
  return Number.isNaN(t) ? str(iso) : new Date(t).toLocaleString();
}
function fmtNum(v, unit) {
  if (typeof v !== 'number') return str(v);
  if (unit === 'B/s' || unit === 'B') {
    const k = ['', 'K', 'M', 'G', 'T'];
    let i = 0, n = v;
    while (Math.abs(n) >= 1024 && i < k.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + ' ' + k[i] + unit;
  }
  return unit ? v + ' ' + unit : String(v);
}
function errorBox(e) {
  if (e instanceof ApiError) return h('div', { class: 'err', text: (e.status ? e.status + ' ' : '') + e.code + ': ' + e.message });
  return h('div', { class: 'err', text: String(e && e.message ? e.message : e) });
}
function okBox(text) { return h('div', { class: 'ok', text }); }
function table(headers, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', { text: x })))), h('tbody', {}, rows));
}

// ---- API
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
async function api(method, path, body, credential) {
  const headers = { Accept: 'application/json', Authorization: 'Bearer ' + (credential || token()) };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer' };
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  let res;
  try { res = await fetch(API + path, init); } catch (e) {
    throw new ApiError(0, 'NetworkError', 'the control plane could not be reached (' + (e && e.message ? e.message : e) + ')');
  }
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (_) { data = null; } }
  if (!res.ok) {
    const err = data && data.error && typeof data.error === 'object' ? data.error : {};
    const failure = new ApiError(res.status, String(err.code || 'HTTP' + res.status), String(err.message || text.slice(0, 500) || res.statusText));
    if (res.status === 401 && !credential) signOut('Signed out: the admin API refused the token (' + failure.message + ').');
    throw failure;
  }
  return data;
}
const list = (data) => (data && Array.isArray(data.value) ? data.value : []);

// ---- session
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopTimer();
  state.pollGeneration++;
  state.joinAreas = {}; state.sites = []; state.servers = {}; state.selected = null;
  for (const id of ['sites-list', 'server-detail', 'site-create', 'sites-msg', 'configs-list', 'config-editor', 'configs-msg', 'thresholds-list', 'thresholds-msg']) $(id).replaceChildren();
  $('site-create').hidden = true;
  $('nav').hidden = true; $('signout').hidden = true; $('who').textContent = '';
  for (const v of ['sites', 'configs', 'thresholds']) $('view-' + v).hidden = true;
  $('signin').hidden = false;
  $('signin-token').value = '';
  show($('signin-msg'), message ? h('div', { class: 'err', text: message }) : null);
  $('signin-token').focus();
}
async function signIn(ev) {
  ev.preventDefault();
  const candidate = $('signin-token').value.trim();
  if (!candidate) return;
  show($('signin-msg'), h('div', { class: 'muted', text: 'Checking…' }));
  try {
    await api('GET', '/microsoftTunnelSites?$top=1&$select=id', undefined, candidate);
  } catch (e) { show($('signin-msg'), errorBox(e)); return; }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('signin-token').value = '';
  enter();
}
function enter() {
  $('signin').hidden = true; $('signin-msg').replaceChildren();
  $('nav').hidden = false; $('signout').hidden = false;
  $('who').textContent = token().startsWith('mstadm_') ? 'local admin token' : 'admin JWT';
  go('sites');
}

// ---- navigation
const state = { view: 'sites', sites: [], servers: {}, configs: [], joinAreas: {}, selected: null, lastRefresh: 0, refreshing: false, timer: null, pollGeneration: 0 };
function go(view) {
  state.view = view;
  for (const b of $('nav').querySelectorAll('button')) {
    if (b.dataset.view === view) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  }
  for (const v of ['sites', 'configs', 'thresholds']) $('view-' + v).hidden = v !== view;
  if (view === 'sites') { refreshSites(); startTimer(); } else stopTimer();
  if (view === 'configs') loadConfigs();
  if (view === 'thresholds') loadThresholds();
}
function startTimer() {
  stopTimer();
  state.timer = setInterval(() => { if (document.visibilityState === 'visible') refreshSites(); }, REFRESH_MS);
}
function stopTimer() { if (state.timer) clearInterval(state.timer); state.timer = null; }
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && token() && state.view === 'sites' && Date.now() - state.lastRefresh > REFRESH_MS) refreshSites();
});

// ---- sites and servers
async function refreshSites() {
  if (state.refreshing || !token()) return;
  state.refreshing = true;
  try {
    const [sites, configs] = await Promise.all([
      api('GET', '/microsoftTunnelSites?$expand=microsoftTunnelConfiguration'),
      api('GET', '/microsoftTunnelConfigurations?$select=id,displayName'),
    ]);
    if (!token()) return;
    state.sites = list(sites);
    state.configs = list(configs);
    const servers = await Promise.all(state.sites.map((s) =>
      api('GET', '/microsoftTunnelSites/' + enc(s.id) + '/microsoftTunnelServers').then(list, (e) => e)));
    if (!token()) return;
    state.servers = {};
    for (const id of Object.keys(state.joinAreas)) if (!state.sites.some((s) => s.id === id)) delete state.joinAreas[id];
    state.sites.forEach((s, i) => { state.servers[s.id] = servers[i]; });
    state.lastRefresh = Date.now();
    $('sites-updated').textContent = 'updated ' + new Date().toLocaleTimeString() + ' · every 15 s while visible';
    $('sites-msg').replaceChildren();
    renderSites();
    // The open server pane follows the list (its "checked in … ago" must not freeze).
    if (state.selected) {
      const site = state.sites.find((x) => x.id === state.selected.siteId);
      const list = site && state.servers[site.id];
      const server = Array.isArray(list) && list.find((v) => v.id === state.selected.serverId);
      if (server) selectServer(site, server, true);
      else { state.selected = null; state.pollGeneration++; $('server-detail').replaceChildren(); }
    }
  } catch (e) {
    if (token()) show($('sites-msg'), errorBox(e));
  } finally { state.refreshing = false; }
}
function renderSites() {
  const out = $('sites-list');
  if (!state.sites.length) { show(out, h('div', { class: 'card muted', text: 'No sites yet. Create one with “New site”.' })); return; }
  show(out, state.sites.map(siteCard));
}
function siteCard(site) {
  const conf = site.microsoftTunnelConfiguration;
  const servers = state.servers[site.id];
  // Kept across refreshes: a join token on display must survive the 15 s re-render.
  const joinArea = state.joinAreas[site.id] || (state.joinAreas[site.id] = h('div'));
  let body;
  if (servers instanceof Error) body = errorBox(servers);
  else if (!servers || !servers.length) body = h('div', { class: 'muted small', text: 'No servers enrolled. Create a join token and run mstunnel-agent enroll on the gateway host.' });
  else body = table(['Server', 'Health', 'Last check-in', 'Agent', 'Gateway', 'Config v.'], servers.map((v) => {
    const sel = state.selected && state.selected.serverId === v.id;
    return h('tr', { class: 'click' + (sel ? ' sel' : ''), onclick: () => selectServer(site, v) },
      h('td', {}, h('button', { type: 'button', class: 'link', text: str(v.displayName) })),
      h('td', {}, badge(v.tunnelServerHealthStatus)),
      timeCell(v.lastCheckinDateTime),
      h('td', { class: 'mono', text: str(v.agentVersion) }),
      h('td', { class: 'mono', text: str(v.serverVersion) }),
      h('td', { text: str(v.appliedConfigurationVersion) }));
  }));
  return h('div', { class: 'card' },
    h('div', { class: 'row' },
      h('h2', { text: str(site.displayName) }),
      h('span', { class: 'muted small', text: (site.publicAddress ? site.publicAddress + ' · ' : '') + 'configuration: ' + (conf ? str(conf.displayName) : 'none') }),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', text: 'Join token…', onclick: () => joinTokenForm(site, joinArea) }),
      h('button', { type: 'button', text: 'Edit…', onclick: () => siteForm(site) }),
      h('button', { type: 'button', class: 'danger', text: 'Delete…', onclick: () => deleteSite(site) })),
    joinArea, body);
}
async function deleteSite(site) {
  if (!confirm('Delete site “' + str(site.displayName) + '”? Sites that still have servers are refused: remove the servers first.')) return;
  try {
    await api('DELETE', '/microsoftTunnelSites/' + enc(site.id));
    show($('sites-msg'), okBox('Site “' + str(site.displayName) + '” deleted.'));
    refreshSites();
  } catch (e) { show($('sites-msg'), errorBox(e)); }
}
function joinTokenForm(site, area) {
  const minutes = h('input', { type: 'number', class: 'num', min: '1', max: '10080', value: '60' });
  const msg = h('div');
  const create = h('button', { type: 'button', class: 'primary', text: 'Create join token', onclick: async () => {
    create.disabled = true;
    try {
      const t = await api('POST', '/microsoftTunnelSites/' + enc(site.id) + '/createJoinToken', { expirationMinutes: Number(minutes.value) || 60 });
      showJoinToken(area, t);
    } catch (e) { show(msg, errorBox(e)); create.disabled = false; }
  } });
  show(area, h('div', { class: 'card' },
    h('div', { class: 'row' }, h('label', {}, 'Valid for (minutes, at most 10080)', minutes), create,
      h('button', { type: 'button', text: 'Cancel', onclick: () => area.replaceChildren() })), msg));
}
function copyButton(getText) {
  const b = h('button', { type: 'button', text: 'Copy' });
  b.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(getText()); b.textContent = 'Copied'; } catch (_) { b.textContent = 'Select and copy by hand'; }
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  });
  return b;
}
function showJoinToken(area, t) {
  const value = String(t.joinToken || '');
  const field = h('input', { type: 'text', class: 'mono token', readonly: true, value, onfocus: (e) => e.target.select() });
  const cmd = 'mstunnel-agent enroll --control-url ' + location.origin + ' --join-token-file join.token';
  show(area, h('div', { class: 'card' },
    h('div', { class: 'ok', text: 'One-time join token created. It is shown only now: copy it before closing this panel.' }),
    h('div', { class: 'row' }, field, copyButton(() => value)),
    h('p', { class: 'small' }, 'Expires ', h('strong', { text: localTime(t.expirationDateTime) }), ' (' + relTime(t.expirationDateTime) + '). ',
      'On the gateway host save it as ', h('code', { text: 'join.token' }), ' (mode 0600), then run:'),
    h('div', { class: 'row' }, h('input', { type: 'text', class: 'mono token', readonly: true, value: cmd, onfocus: (e) => e.target.select() }), copyButton(() => cmd)),
    h('div', { class: 'row' }, h('button', { type: 'button', text: 'Done (forget the token)', onclick: () => area.replaceChildren() }))));
  field.focus();
}
function siteCreateForm() { siteForm(null); }
// One form for a new site (POST) and an existing one (PATCH).
function siteForm(site) {
  const area = $('site-create');
  if (!site && !area.hidden) { area.hidden = true; area.replaceChildren(); return; }
  const conf = site && site.microsoftTunnelConfiguration;
  const name = h('input', { type: 'text', required: true, maxlength: '200', value: site ? String(site.displayName || '') : '' });
  const address = h('input', { type: 'text', placeholder: 'vpn.example.com', value: site ? String(site.publicAddress || '') : '' });
  const probe = h('input', { type: 'url', placeholder: 'http://intranet.example.com/', value: site ? String(site.internalNetworkProbeUrl || '') : '' });
  const config = h('select', {}, h('option', { value: '', text: '— none —' }),
    state.configs.map((c) => h('option', { value: c.id, text: str(c.displayName) })));
  if (conf) config.value = conf.id;
  const msg = h('div');
  const close = () => { area.hidden = true; area.replaceChildren(); };
  const form = h('form', { onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { displayName: name.value.trim() };
    if (address.value.trim() || site) body.publicAddress = address.value.trim() || null;
    if (probe.value.trim() || site) body.internalNetworkProbeUrl = probe.value.trim() || null;
    if (config.value) body.microsoftTunnelConfiguration = { id: config.value };
    try {
      const saved = site ? await api('PATCH', '/microsoftTunnelSites/' + enc(site.id), body) : await api('POST', '/microsoftTunnelSites', body);
      close();
      show($('sites-msg'), okBox(site ? 'Site “' + str(saved.displayName) + '” saved.' : 'Site “' + str(saved.displayName) + '” created. Use “Join token…” on it to enroll a server.'));
      refreshSites();
    } catch (e) { show(msg, errorBox(e)); }
  } },
  h('h2', { text: site ? 'Edit site “' + str(site.displayName) + '”' : 'New site' }),
  h('div', { class: 'row' }, h('label', {}, 'Display name', name), h('label', {}, 'Public address', address),
    h('label', {}, 'Internal network probe URL', probe), h('label', {}, 'Server configuration', config)),
  h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', text: site ? 'Save site' : 'Create site' }),
    h('button', { type: 'button', text: 'Cancel', onclick: close })), msg);
  show(area, form);
  area.hidden = false;
  name.focus();
}

// ---- one server
function serverBase(sel) { return '/microsoftTunnelSites/' + enc(sel.siteId) + '/microsoftTunnelServers/' + enc(sel.serverId); }
async function selectServer(site, server, refresh) {
  const same = state.selected && state.selected.serverId === server.id;
  state.selected = { siteId: site.id, serverId: server.id };
  const generation = ++state.pollGeneration;
  if (!refresh) renderSites();
  const out = $('server-detail');
  const base = serverBase(state.selected);
  // A log collection in progress keeps its area (and its polling) across refreshes.
  if (!(refresh && same && state.logArea)) {
    state.logArea = h('div');
    state.collect = h('button', { type: 'button', text: 'Collect logs (last hour)' });
    const area = state.logArea, button = state.collect;
    button.addEventListener('click', () => collectLogs(base, button, area, state.pollGeneration));
  }
  const logArea = state.logArea, collect = state.collect;
  const remove = h('button', { type: 'button', class: 'danger', text: 'Remove server…', onclick: async () => {
    if (!confirm('Remove server “' + str(server.displayName) + '” from site “' + str(site.displayName) + '”? Its agent certificate is refused from then on; the gateway host must enroll again to come back.')) return;
    try {
      await api('DELETE', base);
      state.selected = null; state.pollGeneration++; out.replaceChildren();
      show($('sites-msg'), okBox('Server “' + str(server.displayName) + '” removed.'));
      refreshSites();
    } catch (e) { show(logArea, errorBox(e)); }
  } });
  const head = h('div', { class: 'card' },
    h('div', { class: 'row' }, h('h2', { text: str(server.displayName) }), badge(server.tunnelServerHealthStatus), h('span', { class: 'spacer' }),
      h('button', { type: 'button', text: 'Reload', onclick: () => selectServer(site, server) }), collect, remove,
      h('button', { type: 'button', text: 'Close', onclick: () => { state.selected = null; state.pollGeneration++; out.replaceChildren(); renderSites(); } })),
    h('dl', { class: 'kv small' },
      h('dt', { text: 'Site' }), h('dd', { text: str(site.displayName) }),
      h('dt', { text: 'Server id' }), h('dd', { class: 'mono', text: str(server.id) }),
      h('dt', { text: 'Last check-in' }), h('dd', { text: localTime(server.lastCheckinDateTime) + ' (' + relTime(server.lastCheckinDateTime) + ')' }),
      h('dt', { text: 'Versions' }), h('dd', { class: 'mono', text: 'agent ' + str(server.agentVersion) + ' · gateway ' + str(server.serverVersion) + ' · configuration v' + str(server.appliedConfigurationVersion) })),
    logArea);
  const checks = h('div', { class: 'card' }, h('h3', { text: 'Health checks' }), h('div', { class: 'muted', text: 'Loading…' }));
  const metrics = h('div', { class: 'card' }, h('h3', { text: 'Latest metrics' }), h('div', { class: 'muted', text: 'Loading…' }));
  const series = h('div', { class: 'card' }, h('h3', { text: 'Last 24 hours' }), h('div', { class: 'muted', text: 'Loading…' }));
  const events = h('div', { class: 'card' }, h('h3', { text: 'Recent session events (newest 50)' }), h('div', { class: 'muted', text: 'Loading…' }));
  show(out, head, checks, metrics, series, events);

  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const [c, m, e, ...ts] = await Promise.allSettled([
    api('GET', base + '/healthChecks'),
    api('POST', base + '/getHealthMetrics', {}),
    api('GET', base + '/sessionEvents?$top=50'),
    ...SERIES.map(([name]) => api('POST', base + '/getHealthMetricTimeSeries', { metricName: name, startDateTime: since })),
  ]);
  if (generation !== state.pollGeneration) return;
  fill(checks, c, (d) => {
    const rows = list(d);
    return rows.length ? table(['Check', 'Status', 'Message', 'Value'], rows.map((x) => h('tr', {},
      h('td', { text: label(x.id), title: str(x.id) }), h('td', {}, badge(x.status)), h('td', { text: str(x.message) }), h('td', { class: 'mono', text: str(x.value) }))))
      : h('div', { class: 'muted', text: 'No checks.' });
  });
  fill(metrics, m, (d) => {
    const rows = list(d);
    return rows.length ? h('dl', { class: 'kv' }, rows.map((x) => [h('dt', { text: label(x.name), title: str(x.name) }), h('dd', { text: fmtNum(x.value, UNITS[x.name] || '') })]))
      : h('div', { class: 'muted', text: 'No health report received yet.' });
  });
  show(series, h('h3', { text: 'Last 24 hours' }), h('div', { class: 'grid' }, SERIES.map(([name, label, unit], i) => {
    const r = ts[i];
    if (r.status === 'rejected') return h('div', { class: 'metric' }, h('div', { text: label }), errorBox(r.reason));
    return sparkline(label, unit, list(r.value));
  })));
  fill(events, e, (d) => {
    const rows = list(d).slice().reverse();
    return rows.length ? h('div', { class: 'scroll' }, table(['Time', 'Type', 'User', 'Device', 'Client', 'Assigned', 'Session', 'Reason', 'In / out'],
      rows.map((x) => h('tr', {}, timeCell(x.dateTime), h('td', { text: str(x.type) }), h('td', { text: str(x.userName || x.userId) }),
        h('td', { class: 'mono', text: str(x.deviceId) }), h('td', { class: 'mono', text: str(x.clientAddress) }),
        h('td', { class: 'mono', text: str(x.assignedAddress) }), h('td', { class: 'mono', text: str(x.sessionId) }),
        h('td', { text: str(x.reason) }),
        h('td', { text: x.bytesIn === null || x.bytesIn === undefined ? '—' : fmtNum(x.bytesIn, 'B') + ' / ' + fmtNum(x.bytesOut, 'B') })))))
      : h('div', { class: 'muted', text: 'No session events.' });
  });
}
function fill(card, result, render) {
  const title = card.firstChild;
  show(card, title, result.status === 'fulfilled' ? render(result.value) : errorBox(result.reason));
}
function sparkline(label, unit, points) {
  const values = points.map((p) => Number(p.value)).filter((v) => Number.isFinite(v));
  const box = h('div', { class: 'metric' });
  const last = values.length ? values[values.length - 1] : null;
  append(box, [h('div', { class: 'row' }, h('span', { text: label }), h('span', { class: 'spacer' }), h('span', { class: 'v', text: last === null ? '—' : fmtNum(last, unit) }))]);
  if (values.length < 2) { append(box, [h('div', { class: 'muted small', text: values.length ? 'one sample' : 'no samples' })]); return box; }
  const W = 240, H = 40, P = 2;
  const min = Math.min(...values), max = Math.max(...values);
  const span = max - min || 1;
  const pts = values.map((v, i) => (P + (i * (W - 2 * P)) / (values.length - 1)).toFixed(1) + ',' + (H - P - ((v - min) * (H - 2 * P)) / span).toFixed(1)).join(' ');
  const first = points[0].dateTime, lastAt = points[points.length - 1].dateTime;
  append(box, [
    svg('svg', { class: 'spark', viewBox: '0 0 ' + W + ' ' + H, width: '100%', height: String(H), preserveAspectRatio: 'none', role: 'img', 'aria-label': label + ' over time' },
      svg('title', { text: label + ': ' + values.length + ' samples, ' + localTime(first) + ' – ' + localTime(lastAt) }),
      svg('line', { x1: '0', y1: String(H - P), x2: String(W), y2: String(H - P) }),
      svg('polyline', { points: pts })),
    h('div', { class: 'muted small', text: 'min ' + fmtNum(min, unit) + ' · max ' + fmtNum(max, unit) + ' · ' + values.length + ' samples' }),
  ]);
  return box;
}
async function collectLogs(base, button, area, generation) {
  button.disabled = true;
  const end = new Date(), start = new Date(end.getTime() - 3600 * 1000);
  const status = h('div', { class: 'muted', text: 'Requesting a log collection…' });
  show(area, status);
  try {
    const lc = await api('POST', base + '/createServerLogCollectionRequest', { startDateTime: start.toISOString(), endDateTime: end.toISOString() });
    const id = String(lc.id);
    const started = Date.now();
    for (;;) {
      if (generation !== state.pollGeneration) return;
      const r = await api('GET', '/microsoftTunnelServerLogCollectionResponses/' + enc(id));
      if (r.status === 'completed') {
        const link = await api('POST', '/microsoftTunnelServerLogCollectionResponses/' + enc(id) + '/createDownloadUrl', {});
        const url = String(link && link.value || '');
        if (!/^https?:\/\//i.test(url)) throw new Error('unexpected download URL from the API');
        show(area, h('div', { class: 'ok' }, 'Logs collected (' + fmtNum(Number(r.sizeInBytes) || 0, 'B') + '). ',
          h('a', { href: url, rel: 'noopener noreferrer', download: '', text: 'Download' }), ' — the link works for 10 minutes.'));
        break;
      }
      if (r.status !== 'pending') { show(area, h('div', { class: 'err', text: 'Log collection ' + id + ' ' + str(r.status) + '.' })); break; }
      const waited = Math.round((Date.now() - started) / 1000);
      show(area, h('div', { class: 'muted' }, badge('pending'), ' log collection ' + id + ': waiting for the agent to upload (' + waited + ' s; agents pick requests up at their next check-in)…'));
      if (Date.now() - started > 15 * 60 * 1000) { show(area, h('div', { class: 'err', text: 'Still pending after 15 minutes; check the agent. Collection id ' + id + '.' })); break; }
      await new Promise((r2) => setTimeout(r2, 4000));
    }
  } catch (e) { show(area, errorBox(e)); } finally { button.disabled = false; }
}

// ---- configurations
async function loadConfigs() {
  const out = $('configs-list');
  try {
    const configs = list(await api('GET', '/microsoftTunnelConfigurations'));
    state.configs = configs;
    $('configs-msg').replaceChildren();
    if (!configs.length) { show(out, h('div', { class: 'muted', text: 'No configurations yet.' })); return; }
    show(out, table(['Name', 'Network', 'Port', 'Routes', 'Updated'], configs.map((c) => h('tr', { class: 'click', onclick: () => editConfig(c.id) },
      h('td', {}, h('button', { type: 'button', class: 'link', text: str(c.displayName) })),
      h('td', { class: 'mono', text: str(c.network) }), h('td', { text: str(c.listenPort) }),
      h('td', { text: String((c.routeIncludes || []).length) + ' in / ' + String((c.routeExcludes || []).length) + ' out' }),
      timeCell(c.lastUpdateDateTime)))));
  } catch (e) { show($('configs-msg'), errorBox(e)); }
}
function stripOData(o) {
  const out = {};
  for (const [k, v] of Object.entries(o || {})) if (!k.startsWith('@odata.')) out[k] = v;
  return out;
}
async function editConfig(id, notice) {
  const out = $('config-editor');
  show(out, h('div', { class: 'card muted', text: 'Loading…' }));
  try {
    const c = await api('GET', '/microsoftTunnelConfigurations/' + enc(id));
    const msg = configEditor('Edit “' + str(c.displayName) + '”', stripOData(c), async (body) => api('PATCH', '/microsoftTunnelConfigurations/' + enc(id), body), 'Save', id);
    if (notice) show(msg, okBox(notice));
  } catch (e) { show(out, errorBox(e)); }
}
function newConfig() {
  configEditor('New configuration', {
    displayName: 'New configuration', description: '', network: '100.64.0.0/16', dnsServers: ['198.18.0.53'],
    defaultDomainSuffix: '', routeIncludes: [], routeExcludes: [], splitDNS: [], listenPort: 443,
    disableUdpConnections: false, advancedSettings: [{ name: 'session-timeout', value: '3600' }],
  }, async (body) => api('POST', '/microsoftTunnelConfigurations', body), 'Create');
}
// A form over the configuration's Graph properties (lists one entry per line, advanced
// settings as name = value lines); "JSON" shows the same object as text for what the form
// does not cover. Every write is validated by the API as the gateway validates it.
function configEditor(title, object, save, saveLabel, id) {
  const out = $('config-editor');
  const lines = (a) => (a || []).join('\n');
  const field = (v) => h('input', { type: 'text', value: v === undefined || v === null ? '' : String(v) });
  const area = (v, ph) => h('textarea', { class: 'mono short', spellcheck: 'false', placeholder: ph || '', value: v });
  const f = {
    displayName: field(object.displayName), description: field(object.description),
    network: field(object.network), ipv6Network: field(object.ipv6Network), listenPort: h('input', { type: 'number', class: 'num', min: '1', max: '65535', value: String(object.listenPort || 443) }),
    dnsServers: area(lines(object.dnsServers), 'one address per line'), defaultDomainSuffix: field(object.defaultDomainSuffix),
    splitDNS: area(lines(object.splitDNS), 'one domain per line'),
    routeIncludes: area(lines(object.routeIncludes), 'one CIDR per line (empty: all traffic through the tunnel)'),
    routeExcludes: area(lines(object.routeExcludes), 'one CIDR per line'),
    disableUdpConnections: h('input', { type: 'checkbox' }),
    advancedSettings: area((object.advancedSettings || []).map((x) => x.name + ' = ' + x.value).join('\n'), 'name = value, one per line (session-timeout = 3600)'),
  };
  f.disableUdpConnections.checked = !!object.disableUdpConnections;
  const json = h('textarea', { class: 'mono', spellcheck: 'false', hidden: true });
  const msg = h('div');
  const list = (t) => t.value.split('\n').map((x) => x.trim()).filter((x) => x);
  function fromForm() {
    const body = Object.assign({}, object, {
      displayName: f.displayName.value.trim(), description: f.description.value.trim(), network: f.network.value.trim(),
      ipv6Network: f.ipv6Network.value.trim() || null, listenPort: Number(f.listenPort.value), dnsServers: list(f.dnsServers),
      defaultDomainSuffix: f.defaultDomainSuffix.value.trim(), splitDNS: list(f.splitDNS), routeIncludes: list(f.routeIncludes),
      routeExcludes: list(f.routeExcludes), disableUdpConnections: f.disableUdpConnections.checked,
      advancedSettings: list(f.advancedSettings).map((x) => {
        const i = x.indexOf('=');
        if (i < 1) throw new Error('advanced setting “' + x + '”: write it as name = value');
        return { name: x.slice(0, i).trim(), value: x.slice(i + 1).trim() };
      }),
    });
    delete body.id; delete body.lastUpdateDateTime;
    return body;
  }
  const toggle = h('button', { type: 'button', text: 'JSON' });
  toggle.addEventListener('click', () => {
    try { json.value = JSON.stringify(json.hidden ? fromForm() : JSON.parse(json.value), null, 2); } catch (e) { show(msg, h('div', { class: 'err', text: e.message })); return; }
    if (!json.hidden) { configEditor(title, JSON.parse(json.value), save, saveLabel, id); return; }
    json.hidden = false; form.hidden = true; toggle.textContent = 'Form';
  });
  const button = h('button', { type: 'button', class: 'primary', text: saveLabel });
  button.addEventListener('click', async () => {
    let body;
    try { body = json.hidden ? fromForm() : JSON.parse(json.value); } catch (e) { show(msg, h('div', { class: 'err', text: e.message })); return; }
    if (!body || typeof body !== 'object' || Array.isArray(body)) { show(msg, h('div', { class: 'err', text: 'The body must be a JSON object.' })); return; }
    button.disabled = true;
    try {
      const saved = await save(body);
      loadConfigs();
      editConfig(String(saved.id), 'Saved “' + str(saved.displayName) + '” at ' + new Date().toLocaleTimeString() + '.');
    } catch (e) { show(msg, errorBox(e)); } finally { button.disabled = false; }
  });
  const del = id ? h('button', { type: 'button', class: 'danger', text: 'Delete…', onclick: async () => {
    if (!confirm('Delete configuration “' + str(object.displayName) + '”? A configuration still used by a site is refused.')) return;
    try { await api('DELETE', '/microsoftTunnelConfigurations/' + enc(id)); out.replaceChildren(); loadConfigs(); show($('configs-msg'), okBox('Configuration deleted.')); }
    catch (e) { show(msg, errorBox(e)); }
  } }) : null;
  const row = (...xs) => h('div', { class: 'row' }, ...xs);
  const form = h('div', {},
    row(h('label', {}, 'Display name', f.displayName), h('label', {}, 'Description', f.description)),
    row(h('label', {}, 'Client address pool (IPv4 CIDR)', f.network), h('label', {}, 'IPv6 pool (optional)', f.ipv6Network), h('label', {}, 'Port', f.listenPort),
      h('label', { class: 'check' }, f.disableUdpConnections, 'No UDP (DTLS) connections')),
    row(h('label', {}, 'DNS servers', f.dnsServers), h('label', {}, 'Split DNS domains', f.splitDNS), h('label', {}, 'Default domain suffix', f.defaultDomainSuffix)),
    row(h('label', {}, 'Routes through the tunnel (include)', f.routeIncludes), h('label', {}, 'Routes outside the tunnel (exclude)', f.routeExcludes)),
    row(h('label', {}, 'Advanced settings', f.advancedSettings)));
  show(out, h('div', { class: 'card' }, h('h2', { text: title }),
    h('p', { class: 'small muted', text: 'At most 500 include and exclude routes together. Every save is validated as the gateway validates admin-settings.json.' }),
    form, json, row(button, toggle, del, h('button', { type: 'button', text: 'Close', onclick: () => out.replaceChildren() })), msg));
  return msg;
}

// ---- thresholds
async function loadThresholds() {
  const out = $('thresholds-list');
  try {
    const rows = list(await api('GET', '/microsoftTunnelHealthThresholds'));
    $('thresholds-msg').replaceChildren();
    show(out, table(['Metric', 'Unit', 'Healthy threshold', 'Unhealthy threshold', 'Defaults (healthy / unhealthy)', ''], rows.map(thresholdRow)));
  } catch (e) { show($('thresholds-msg'), errorBox(e)); }
}
function thresholdRow(t) {
  const healthy = h('input', { type: 'number', class: 'num', step: '1', value: String(t.healthyThreshold) });
  const unhealthy = h('input', { type: 'number', class: 'num', step: '1', value: String(t.unhealthyThreshold) });
  const msg = h('div', { class: 'small' });
  const save = h('button', { type: 'button', text: 'Save' });
  save.addEventListener('click', async () => {
    const a = Number(healthy.value), b = Number(unhealthy.value);
    if (!Number.isInteger(a) || !Number.isInteger(b)) { show(msg, h('div', { class: 'err', text: 'Thresholds are whole numbers.' })); return; }
    save.disabled = true;
    try {
      const r = await api('PATCH', '/microsoftTunnelHealthThresholds/' + enc(t.id), { healthyThreshold: a, unhealthyThreshold: b });
      healthy.value = String(r.healthyThreshold); unhealthy.value = String(r.unhealthyThreshold);
      show(msg, h('span', { class: 'muted', text: 'saved ' + new Date().toLocaleTimeString() }));
    } catch (e) { show(msg, errorBox(e)); } finally { save.disabled = false; }
  });
  return h('tr', {}, h('td', { text: label(t.id), title: str(t.id) }), h('td', { text: UNITS[t.id] || '' }), h('td', {}, healthy), h('td', {}, unhealthy),
    h('td', { text: str(t.defaultHealthyThreshold) + ' / ' + str(t.defaultUnhealthyThreshold) }), h('td', {}, save, msg));
}

// ---- wiring
$('signin-form').addEventListener('submit', signIn);
$('signout').addEventListener('click', () => signOut(''));
for (const b of $('nav').querySelectorAll('button')) b.addEventListener('click', () => go(b.dataset.view));
$('sites-refresh').addEventListener('click', refreshSites);
$('site-new').addEventListener('click', siteCreateForm);
$('configs-refresh').addEventListener('click', loadConfigs);
$('config-new').addEventListener('click', newConfig);
$('thresholds-refresh').addEventListener('click', loadThresholds);
if (token()) enter(); else signOut('');
})();
"""#
}
