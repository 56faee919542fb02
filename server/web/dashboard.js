// The operator's dashboard: every mission with its progress and queue
// depth, and for the one selected, spend against the budget and gate
// latency as charts and its latest failures. Operators and auditors sign
// in as on the reviewer page (their own key file, unlocked in this tab to
// sign the server's challenge); the session cookie is the same, so one
// sign-in serves both pages. The dashboard only reads: it keeps no key
// once signed in.
//
// It refreshes itself: on every event of /api/events (gates and tasks
// changing) and every few seconds besides (spend moves without events).
// Everything from the server is set as text, never parsed as HTML.

import { fromHex, sign, signInMessage, toHex, unlockKeyFile, WRONG_PASSPHRASE, KEY_FILE_BYTES_MAX } from './crypto.js';
import { el, formatAmount, meter, missionPanel, progressBar } from './dashboard-charts.js';

const $ = (id) => document.getElementById(id);

/** The roles the dashboard's API answers (dashboard.rs, operator.rs). */
const ROLES = ['operator', 'auditor'];
/** How often the page looks again without an event: spend and queues move silently. */
const POLL_MS = 5000;
/** Events arrive in bursts (a mission deciding many cases): one refresh per this. */
const EVENT_DEBOUNCE_MS = 300;

const state = {
  /** {name, keyId, role} once signed in (no key is kept). */
  me: null,
  /** The selected mission's id. */
  selected: null,
  events: null,
  poll: null,
  debounce: null,
  refreshing: false,
  again: false,
  /** The series drawn, as JSON text (to redraw only on change). */
  shownSeries: null,
};

// ------------------------------------------------------------ utilities

function setState(name) {
  document.body.dataset.state = name;
  const signedIn = name === 'signed-in';
  $('signin-view').hidden = signedIn;
  $('dashboard-view').hidden = !signedIn;
  $('who').hidden = !signedIn;
  const unlocking = name === 'unlocking';
  $('unlock').hidden = !unlocking;
  for (const id of ['key-file', 'passphrase', 'sign-in']) $(id).disabled = unlocking;
}

/** Shows `text` in #message; `stale`: a failed refresh, cleared by the next good one. */
function say(text, kind = 'info', { stale = false } = {}) {
  const box = $('message');
  box.textContent = text;
  box.dataset.kind = kind;
  box.dataset.stale = stale ? 'yes' : 'no';
  box.hidden = !text;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.error === 'string' && body.error ? body.error : `the conductor answered HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: body === undefined ? { Accept: 'application/json' } : { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new Error(`cannot reach the conductor (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      if (response.ok) throw new Error(`the conductor's answer to ${method} ${path} is not JSON`);
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && state.me) signedOut(`Signed out: ${error.message}`);
    throw error;
  }
  return data;
}

// -------------------------------------------------------------- sign-in

/** Opens the dashboard for `who` (GET /api/me or POST /api/session's answer). */
function signedIn(who) {
  if (!ROLES.includes(who.role)) {
    say(`The dashboard is for operators and auditors; you are signed in as a ${who.role}. Reviewers decide gates on the review page.`, 'error');
    setState('signed-out');
    return;
  }
  state.me = { name: who.name || who.role, keyId: who.key_id || '', role: who.role };
  $('who-name').textContent = state.me.name;
  $('who-key').textContent = state.me.keyId;
  document.body.dataset.role = who.role;
  setState('signed-in');
  openEvents();
  state.poll = setInterval(() => {
    if (document.visibilityState !== 'hidden') refresh();
  }, POLL_MS);
  refresh();
}

async function onSignIn(event) {
  event.preventDefault();
  say('');
  const file = $('key-file').files?.[0];
  if (!file) return say('Choose your key file first.', 'error');
  if (file.size > KEY_FILE_BYTES_MAX) return say('That file is larger than any conductor key file.', 'error');
  const passphrase = $('passphrase').value;
  setState('unlocking');
  const progress = $('unlock-progress');
  progress.value = 0;
  $('unlock-status').textContent = 'unlocking key…';
  try {
    let key = await unlockKeyFile(await file.text(), passphrase, {
      roles: ROLES,
      onProgress: (fraction) => {
        progress.value = fraction;
      },
    });
    $('passphrase').value = '';
    $('unlock-status').textContent = 'signing in…';
    const { challenge } = await api('GET', '/api/challenge');
    const challengeBytes = fromHex(challenge, 32, 'the challenge');
    const signature = await sign(key.signingKey, signInMessage(challengeBytes));
    const session = await api('POST', '/api/session', {
      public_key: key.publicHex,
      challenge: toHex(challengeBytes),
      signature: toHex(signature),
    });
    if (session?.public_key && session.public_key.toLowerCase() !== key.publicHex) {
      throw new Error('the conductor signed in a different key than this one');
    }
    // Looking needs no signature: the key is not kept.
    key = null;
    $('sign-in-form').reset();
    say('');
    signedIn(session);
  } catch (e) {
    setState('signed-out');
    if (e.message === WRONG_PASSPHRASE) $('passphrase').focus();
    say(e.message, 'error');
  }
}

async function onSignOut() {
  try {
    await api('DELETE', '/api/session');
    signedOut('Signed out.', 'info');
  } catch (e) {
    signedOut(e.status === 401 ? 'Signed out.' : `Signed out here; the conductor said: ${e.message}`, e.status === 401 ? 'info' : 'error');
  }
}

function signedOut(text, kind = 'error') {
  state.me = null;
  closeEvents();
  if (state.poll) clearInterval(state.poll);
  state.poll = null;
  $('mission-rows').replaceChildren();
  $('detail').replaceChildren();
  state.shownSeries = null;
  $('detail-view').hidden = true;
  delete document.body.dataset.role;
  setState('signed-out');
  if (text) say(text, kind);
}

// ---------------------------------------------------------- live events

function openEvents() {
  closeEvents();
  if (!state.me || typeof EventSource === 'undefined') return;
  const events = new EventSource('/api/events', { withCredentials: true });
  state.events = events;
  events.onopen = () => {
    $('live').hidden = false;
  };
  const soon = () => {
    if (state.debounce) return;
    state.debounce = setTimeout(() => {
      state.debounce = null;
      refresh();
    }, EVENT_DEBOUNCE_MS);
  };
  events.addEventListener('gates', soon);
  events.onmessage = soon;
  events.onerror = () => {
    $('live').hidden = true;
    // Refused outright (the session ended): polling notices the 401.
    if (events.readyState === EventSource.CLOSED && state.events === events) state.events = null;
  };
}

function closeEvents() {
  if (state.events) state.events.close();
  state.events = null;
  if (state.debounce) clearTimeout(state.debounce);
  state.debounce = null;
  $('live').hidden = true;
}

// ------------------------------------------------------------- missions

async function refresh() {
  if (!state.me) return;
  // One refresh at a time; a request meanwhile runs once more after it.
  if (state.refreshing) {
    state.again = true;
    return;
  }
  state.refreshing = true;
  try {
    const { missions } = await api('GET', '/api/missions');
    renderMissions(missions);
    const chosen = missions.find((m) => m.id === state.selected) ?? missions.find((m) => m.running_here) ?? missions[missions.length - 1];
    state.selected = chosen?.id ?? null;
    markSelected();
    if (chosen) await renderDetail(chosen);
    else $('detail-view').hidden = true;
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    if ($('message').dataset.stale === 'yes') say('');
  } catch (e) {
    if (state.me) say(`Could not refresh: ${e.message}`, 'error', { stale: true });
  } finally {
    state.refreshing = false;
    if (state.again) {
      state.again = false;
      refresh();
    }
  }
}

function statusText(status) {
  return String(status ?? '').replaceAll('_', ' ');
}

function progressWords(counts) {
  const done = (counts.decided ?? 0) + (counts.failed ?? 0) + (counts.skipped ?? 0);
  const total = done + (counts.awaiting_review ?? 0) + (counts.unfinished ?? 0);
  const parts = [`${done} of ${total} done`, `${counts.decided ?? 0} decided`];
  if (counts.failed) parts.push(`${counts.failed} failed`);
  if (counts.skipped) parts.push(`${counts.skipped} skipped`);
  if (counts.awaiting_review) parts.push(`${counts.awaiting_review} awaiting review`);
  if (counts.unfinished) parts.push(`${counts.unfinished} to do`);
  return parts.join(' · ');
}

function missionRow(m) {
  const counts = m.counts ?? {};
  const intake = m.intake;
  const queue = intake
    ? el(
        'td',
        { class: 'queue' },
        el('span', { class: 'queue-depth', text: `${intake.queued} / ${intake.queue_max}` }),
        meter(intake.queued, intake.queue_max, 'queue-meter'),
        el('span', { class: 'sub', text: `${intake.received} received · ${intake.open ? 'open' : 'closed'}` }),
      )
    : el('td', { class: 'queue' }, el('span', { class: 'muted', text: '— (batch)' }));
  return el(
    'tr',
    { 'data-mission-id': m.id, 'data-status': m.status },
    el(
      'td',
      { class: 'mission' },
      el('button', { type: 'button', class: 'link', text: m.name, onclick: () => select(m.id) }),
      el('code', { class: 'sub', text: m.id }),
    ),
    el('td', { class: 'status' }, el('span', { class: `badge status-${m.status}`, text: statusText(m.status) }), m.running_here ? el('span', { class: 'sub', text: 'running here' }) : null),
    el('td', { class: 'counts' }, progressBar(counts), el('span', { class: 'sub progress-text', text: progressWords(counts) })),
    queue,
    el(
      'td',
      { class: 'spend' },
      el('span', { text: `${formatAmount(m.settled)} / ${formatAmount(m.limit)}` }),
      meter(m.settled, m.limit, 'spend-meter'),
    ),
  );
}

/**
 * Replaces only the rows whose mission changed, so that a refresh every
 * few seconds keeps the focus (a keyboard user's) and what is unchanged.
 */
function renderMissions(missions) {
  $('mission-count').textContent = `(${missions.length})`;
  $('missions-empty').hidden = missions.length > 0;
  $('missions').hidden = missions.length === 0;
  const shown = new Map([...$('mission-rows').children].map((row) => [row.dataset.missionId, row]));
  const rows = missions.map((m) => {
    const text = JSON.stringify(m);
    const row = shown.get(m.id);
    if (row && row.dataset.shown === text) return row;
    const fresh = missionRow(m);
    fresh.dataset.shown = text;
    return fresh;
  });
  const same = rows.length === shown.size && rows.every((row, i) => $('mission-rows').children[i] === row);
  if (!same) $('mission-rows').replaceChildren(...rows);
}

function markSelected() {
  for (const row of $('mission-rows').querySelectorAll('tr')) {
    const on = row.dataset.missionId === state.selected;
    row.classList.toggle('selected', on);
    row.setAttribute('aria-selected', on ? 'true' : 'false');
  }
}

function select(id) {
  state.selected = id;
  markSelected();
  refresh();
}

async function renderDetail(mission) {
  const { series, complete, live } = await api('GET', `/api/missions/${encodeURIComponent(mission.id)}/series`);
  // The selection may have moved while this was on its way.
  if (state.selected !== mission.id) return;
  const view = $('detail-view');
  view.hidden = false;
  view.dataset.missionId = mission.id;
  $('detail-title').textContent = mission.name;
  $('detail-id').textContent = mission.id;
  $('detail-note').textContent = complete
    ? live
      ? 'At work: drawn up to now.'
      : ''
    : `Still reading this mission's journal (${series.journal_entries} entries so far); the charts fill in as it goes.`;
  // Redrawn only when it changed (a tooltip being read stays put).
  const text = JSON.stringify(series);
  if (state.shownSeries !== text) {
    state.shownSeries = text;
    $('detail').replaceChildren(missionPanel(series));
  }
}

// ---------------------------------------------------------------- start

async function start() {
  setState('signed-out');
  $('sign-in-form').addEventListener('submit', onSignIn);
  $('sign-out').addEventListener('click', onSignOut);
  $('refresh').addEventListener('click', () => refresh());
  if (!globalThis.crypto?.subtle) {
    say('Signing in needs WebCrypto, which browsers offer only on https or localhost pages: open the conductor over one of those.', 'error');
  }
  // Signed in already (on the review page, say): the same session serves.
  try {
    const me = await api('GET', '/api/me');
    if (me) signedIn(me);
  } catch {
    // Not signed in: the form is showing.
  }
}

start();
