// The conductor's reviewer page: sign in with your own key, see the gates
// waiting for you, and decide them with signatures made in this tab.
// Operators and auditors sign in the same way to look: operators see the
// queue, auditors the decided gates; only reviewers decide (the server
// enforces it; the page just does not offer what would be refused).
//
// Trust model, in short:
//  - the private key is unlocked here and kept only as a non-extractable
//    WebCrypto key in this tab's memory (gone on reload or sign-out);
//  - the server prepares each journal entry, but the page decodes the
//    entry's own bytes and checks them against what the reviewer chose
//    before signing (crypto.js `checkPrepared`): a server that is wrong or
//    compromised cannot get a signature on anything else;
//  - everything from the server is rendered as text (textContent), never
//    as HTML: case data and model output are untrusted.

import {
  WRONG_PASSPHRASE,
  checkPrepared,
  fromHex,
  sign,
  signEntries,
  signInMessage,
  toHex,
  unlockKeyFile,
  KEY_FILE_BYTES_MAX,
} from './crypto.js';

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();

/** How often a decision is prepared and signed again when the journal moved. */
const DECIDE_ATTEMPTS = 5;
/** The server's bound on a note (gates.rs NOTE_BYTES_MAX). */
const NOTE_BYTES_MAX = 4096;
/** The keys that sign in here (serve.rs allows these and no others). */
const SIGN_IN_ROLES = ['reviewer', 'operator', 'auditor'];

/** What each role sees: the queue of pending gates, or only decided ones. */
const VIEWS = {
  reviewer: { queue: true, heading: 'Gates waiting for you', empty: 'No gates are waiting for you.', note: null },
  operator: {
    queue: true,
    heading: 'Gates waiting for review',
    empty: 'No gates are waiting for review.',
    note: 'You signed in with an operator key: you see the queue as reviewers do; only reviewers decide.',
  },
  auditor: {
    queue: false,
    heading: 'Decided gates',
    empty: null,
    note: 'You signed in with an auditor key: you see the gates once they are decided. The journal that records them is checked offline, with conductor audit verify.',
  },
};

const state = {
  /** {publicKey, publicHex, signingKey, name, keyId, role} once signed in. */
  me: null,
  /** The gates as last fetched, by id, as JSON text (to see what changed). */
  shown: new Map(),
  /** Gate ids with a decision in flight. */
  busy: new Set(),
  events: null,
  eventsRetry: null,
  refreshing: false,
  refreshAgain: false,
};

// ------------------------------------------------------------ utilities

/** Builds an element; children are nodes or strings (always as text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setState(name) {
  document.body.dataset.state = name;
  if (name !== 'signed-in') delete document.body.dataset.role;
  const signedIn = name === 'signed-in';
  $('signin-view').hidden = signedIn;
  $('gates-view').hidden = !signedIn;
  $('who').hidden = !signedIn;
  const unlocking = name === 'unlocking';
  $('unlock').hidden = !unlocking;
  for (const id of ['key-file', 'passphrase', 'sign-in']) $(id).disabled = unlocking;
}

/** Shows `text` in #message; kind: 'error' | 'ok' | 'info'. */
function say(text, kind = 'info') {
  const box = $('message');
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = !text;
}

function clearMessage() {
  say('', 'info');
}

/** An API answer that was not 2xx: carries the status and the JSON body. */
class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.error === 'string' && body.error ? body.error : `the conductor answered HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * One JSON API call. Every non-2xx answer becomes an ApiError with the
 * server's `error` text; a 401 also ends the local session (the cookie is
 * gone or expired, so nothing else will work until the reviewer signs in).
 */
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
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      if (response.ok) throw new Error(`the conductor's answer to ${method} ${path} is not JSON`);
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && state.me) signOutLocally(`Signed out: ${error.message}`);
    throw error;
  }
  return data;
}

function formatTime(rfc3339) {
  if (!rfc3339) return null;
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return el('span', { text: rfc3339 });
  return el('time', { datetime: rfc3339, title: rfc3339, text: date.toLocaleString() });
}

function relative(rfc3339) {
  const ms = new Date(rfc3339).getTime() - Date.now();
  if (Number.isNaN(ms)) return '';
  const abs = Math.abs(ms);
  const [n, unit] =
    abs < 90e3 ? [Math.round(abs / 1e3), 's'] : abs < 90 * 60e3 ? [Math.round(abs / 60e3), 'min'] : abs < 36 * 3600e3 ? [Math.round(abs / 3600e3), 'h'] : [Math.round(abs / 86400e3), 'd'];
  return ms >= 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
}

/** A JSON value as readable text (strings as they are). */
function plain(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** A JSON object as a key/value table, nested objects as nested tables. */
function kvTable(object, depth = 0) {
  const table = el('table', { class: 'kv' });
  const body = el('tbody');
  for (const [key, value] of Object.entries(object)) {
    body.append(el('tr', {}, el('th', { scope: 'row', text: key }), el('td', {}, valueCell(value, depth))));
  }
  table.append(body);
  return table;
}

function valueCell(value, depth) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    if (Object.keys(value).length === 0) return el('span', { class: 'muted', text: '{}' });
    return depth < 3 ? kvTable(value, depth + 1) : el('pre', { class: 'json', text: JSON.stringify(value, null, 2) });
  }
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== 'object')) return value.map(plain).join(', ') || el('span', { class: 'muted', text: '[]' });
    return el('pre', { class: 'json', text: JSON.stringify(value, null, 2) });
  }
  if (value === null) return el('span', { class: 'muted', text: 'null' });
  return plain(value);
}

// -------------------------------------------------------------- sign-in

async function onSignIn(event) {
  event.preventDefault();
  clearMessage();
  const file = $('key-file').files?.[0];
  if (!file) return say('Choose your key file first.', 'error');
  if (file.size > KEY_FILE_BYTES_MAX) return say('That file is larger than any conductor key file.', 'error');
  const passphrase = $('passphrase').value;
  setState('unlocking');
  const progress = $('unlock-progress');
  progress.value = 0;
  $('unlock-status').textContent = 'unlocking key…';
  try {
    const text = await file.text();
    const me = await unlockKeyFile(text, passphrase, {
      roles: SIGN_IN_ROLES,
      onProgress: (fraction) => {
        progress.value = fraction;
      },
    });
    $('passphrase').value = '';
    $('unlock-status').textContent = 'signing in…';
    // Sign-in: prove possession of the key by signing the server's fresh
    // challenge under a sign-in-only prefix (so the signature can never
    // pass for a journal entry's, which uses another prefix).
    const { challenge } = await api('GET', '/api/challenge');
    const challengeBytes = fromHex(challenge, 32, 'the challenge');
    const signature = await sign(me.signingKey, signInMessage(challengeBytes));
    const session = await api('POST', '/api/session', {
      public_key: me.publicHex,
      challenge: toHex(challengeBytes),
      signature: toHex(signature),
    });
    if (session?.public_key && session.public_key.toLowerCase() !== me.publicHex) {
      throw new Error('the conductor signed in a different key than this one');
    }
    state.me = { ...me, name: session?.name || me.role, keyId: session?.key_id || me.publicHex.slice(0, 32), role: session?.role || me.role };
    $('sign-in-form').reset();
    showView(state.me.role);
    $('who-name').textContent = state.me.name;
    $('who-key').textContent = state.me.keyId;
    $('who-key').title = `public key ${me.publicHex}`;
    setState('signed-in');
    openEvents();
    await refreshGates();
  } catch (e) {
    state.me = null;
    setState('signed-out');
    if (e.message === WRONG_PASSPHRASE) {
      $('passphrase').value = '';
      $('passphrase').focus();
    }
    say(e.message, 'error');
  }
}

async function onSignOut() {
  try {
    await api('DELETE', '/api/session');
    signOutLocally('Signed out.', 'info');
  } catch (e) {
    signOutLocally(e.status === 401 ? 'Signed out.' : `Signed out here; the conductor said: ${e.message}`, e.status === 401 ? 'info' : 'error');
  }
}

/** Forgets the key, the gates and the event stream; back to the sign-in form. */
function signOutLocally(text, kind = 'error') {
  state.me = null; // the only reference to the CryptoKey
  closeEvents();
  state.shown.clear();
  state.busy.clear();
  $('gates').replaceChildren();
  $('decided-rows').replaceChildren();
  $('gate-count').textContent = '';
  $('decided-count').textContent = '';
  $('empty').hidden = true;
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
  // Events named `gates` ({"head": n}); unnamed ones too. Either way the
  // list is fetched again: the event says something changed, not what.
  events.addEventListener('gates', () => refreshGates());
  events.onmessage = () => refreshGates();
  events.onerror = () => {
    $('live').hidden = true;
    // The browser reconnects by itself unless the stream was refused
    // outright (for example a 401 once the session expired): then check the
    // session with a plain request and try again a little later.
    if (events.readyState === EventSource.CLOSED && state.events === events) {
      state.events = null;
      state.eventsRetry = setTimeout(async () => {
        state.eventsRetry = null;
        if (!state.me) return;
        await refreshGates();
        if (state.me) openEvents();
      }, 5000);
    }
  };
}

function closeEvents() {
  if (state.eventsRetry) clearTimeout(state.eventsRetry);
  state.eventsRetry = null;
  if (state.events) state.events.close();
  state.events = null;
  $('live').hidden = true;
}

// ---------------------------------------------------------------- gates

/** The signed-in role's view: headings, the note, and which lists show. */
function view() {
  return VIEWS[state.me?.role] ?? VIEWS.auditor;
}

function showView(role) {
  document.body.dataset.role = role;
  const v = view();
  $('gates-heading').textContent = v.heading;
  $('empty').textContent = v.empty ?? '';
  $('role-note').textContent = v.note ?? '';
  $('role-note').hidden = !v.note;
  $('queue').hidden = !v.queue;
  // Without the queue, the decided list is the page: its heading is the page's.
  $('decided-title').hidden = !v.queue;
  $('decided-view').hidden = false;
}

/** Fetches the gates and re-renders; coalesces overlapping calls. */
async function refreshGates() {
  if (!state.me) return;
  if (state.refreshing) {
    state.refreshAgain = true;
    return;
  }
  state.refreshing = true;
  try {
    do {
      state.refreshAgain = false;
      const data = await api('GET', '/api/gates');
      if (!state.me) return;
      if (view().queue) renderGates(Array.isArray(data?.gates) ? data.gates : []);
      renderDecided(Array.isArray(data?.decided) ? data.decided : []);
    } while (state.refreshAgain && state.me);
  } catch (e) {
    if (state.me || e.status !== 401) say(`Could not load the gates: ${e.message}`, 'error');
  } finally {
    state.refreshing = false;
  }
}

/**
 * Renders the list without losing what the reviewer is doing: a card whose
 * gate did not change is kept as it is (note typed, sections opened); a
 * changed one is rebuilt with the reviewer's unsent input carried over.
 */
function renderGates(gates) {
  const list = $('gates');
  const old = new Map([...list.children].map((card) => [card.dataset.gateId, card]));
  const cards = [];
  const shown = new Map();
  for (const gate of gates) {
    if (!gate || typeof gate.id !== 'string') continue;
    const json = JSON.stringify(gate);
    shown.set(gate.id, json);
    const before = old.get(gate.id);
    if (before && state.shown.get(gate.id) === json) {
      cards.push(before);
      continue;
    }
    const card = gateCard(gate);
    if (before) carryInput(before, card);
    cards.push(card);
  }
  state.shown = shown;
  // A rebuilt card must not take away the field the reviewer is typing in.
  const active = document.activeElement;
  const activeCard = active?.closest?.('.gate');
  const activeField = activeCard && ['note', 'outcome', 'reason', 'amount'].find((c) => active.classList.contains(c));
  // Text fields keep their caret; a select box has none.
  const selection = activeField && typeof active.setSelectionRange === 'function' && active.type !== 'number'
    ? [active.selectionStart, active.selectionEnd]
    : null;
  list.replaceChildren(...cards);
  if (activeField && !activeCard.isConnected) {
    const again = cards.find((c) => c.dataset.gateId === activeCard.dataset.gateId)?.querySelector(`.${activeField}`);
    if (again) {
      again.focus();
      if (selection && typeof again.setSelectionRange === 'function') again.setSelectionRange(...selection);
    }
  }
  for (const card of cards) setBusy(card, state.busy.has(card.dataset.gateId));
  $('empty').hidden = cards.length > 0;
  $('gate-count').textContent = cards.length ? `(${cards.length})` : '';
}

/** Whether the reviewer changed a field from what the card first showed. */
function changed(field) {
  if (field instanceof HTMLSelectElement) {
    const first = [...field.options].find((o) => o.defaultSelected) ?? field.options[0];
    return field.value !== (first?.value ?? '');
  }
  return field.value !== field.defaultValue;
}

function carryInput(from, to) {
  for (const selector of ['.note', '.outcome', '.reason', '.amount']) {
    const a = from.querySelector(selector);
    const b = to.querySelector(selector);
    if (!a || !b || !changed(a)) continue;
    // A choice the rebuilt card no longer offers is dropped, not forced.
    if (b instanceof HTMLSelectElement && ![...b.options].some((o) => o.value === a.value && !o.disabled)) continue;
    b.value = a.value;
  }
  const panel = from.querySelector('.edit-fields');
  if (panel && !panel.hidden) openEditPanel(to, true, false);
  const opened = [...from.querySelectorAll('details')].map((d) => d.open);
  to.querySelectorAll('details').forEach((d, i) => {
    if (opened[i] !== undefined) d.open = opened[i];
  });
}

function gateCard(gate) {
  const id = gate.id;
  const slug = `g-${id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const canDecide = gate.can_decide !== false;
  const whyNot = gate.why_not || (canDecide ? null : 'you cannot decide this gate');
  const editable = gate.proposal && !gate.question;
  const isBudget = gate.kind === 'budget';

  const meta = el('p', { class: 'meta' },
    gate.mission ? el('span', {}, 'mission ', el('code', { text: gate.mission })) : null,
    gate.task !== null && gate.task !== undefined ? el('span', { text: `task ${gate.task}` }) : null,
    gate.case_id ? el('span', {}, 'case ', el('code', { text: gate.case_id })) : null,
    gate.requested_at ? el('span', {}, 'requested ', formatTime(gate.requested_at)) : null,
  );

  const deadline = gate.deadline
    ? el('p', { class: `deadline${new Date(gate.deadline).getTime() < Date.now() ? ' overdue' : ''}` },
        el('strong', { text: 'Deadline: ' }), formatTime(gate.deadline), ` (${relative(gate.deadline)})`,
        gate.on_timeout ? `; if nobody decides by then: ${gate.on_timeout}` : '')
    : null;

  const sections = [];
  if (gate.question) {
    sections.push(el('div', { class: 'block question' }, el('h3', { text: 'The agent asks' }), el('p', { class: 'text', text: gate.question })));
  }
  if (gate.budget) {
    const b = gate.budget;
    sections.push(el('div', { class: 'block budget' }, el('h3', { text: 'Budget request' }),
      kvTable({ account: b.account, limit: b.limit, settled: b.settled, 'asks for': b.requested })));
  }
  const pair = [];
  if (gate.case && typeof gate.case === 'object') {
    pair.push(el('div', { class: 'block case' }, el('h3', { text: 'Case' }), kvTable(gate.case)));
  } else if (gate.case !== null && gate.case !== undefined) {
    pair.push(el('div', { class: 'block case' }, el('h3', { text: 'Case' }), el('pre', { class: 'json', text: JSON.stringify(gate.case, null, 2) })));
  }
  if (gate.proposal) {
    const p = gate.proposal;
    pair.push(el('div', { class: 'block proposal' }, el('h3', { text: "Agent's proposal" }),
      el('dl', {},
        el('dt', { text: 'Outcome' }), el('dd', {}, el('span', { class: 'outcome-badge', text: plain(p.outcome) })),
        el('dt', { text: 'Reason' }), el('dd', { class: 'text', text: plain(p.reason) }),
        p.details && typeof p.details === 'object' && Object.keys(p.details).length
          ? [el('dt', { text: 'Details' }), el('dd', {}, kvTable(p.details))]
          : null)));
  }
  if (pair.length) sections.push(el('div', { class: 'pair' }, pair));
  sections.push(delegationBlock(gate.tree));

  const reasoning = Array.isArray(gate.reasoning) ? gate.reasoning : [];
  if (reasoning.length) {
    sections.push(el('details', { class: 'reasoning' },
      el('summary', { text: `Reasoning: ${reasoning.length} model call${reasoning.length === 1 ? '' : 's'}` }),
      reasoning.map((call, i) => el('div', { class: 'call' },
        el('p', { class: 'call-head' }, el('strong', { text: `Call ${i + 1}` }), ` · model ${plain(call.model)}`,
          call.prompt_tokens != null ? ` · ${call.prompt_tokens} prompt + ${call.completion_tokens ?? 0} completion tokens` : ''),
        el('h4', { text: 'Prompt' }), el('pre', { class: 'prompt', text: plain(call.prompt) }),
        el('h4', { text: 'Completion' }), el('pre', { class: 'completion', text: plain(call.completion) })))));
  }

  const memory = Array.isArray(gate.memory) ? gate.memory : [];
  if (memory.length) {
    sections.push(el('details', { class: 'memory', open: true },
      el('summary', { text: `Memory used: ${memory.length} fact${memory.length === 1 ? '' : 's'}` }),
      el('div', { class: 'scroll' }, el('table', { class: 'facts' },
        el('thead', {}, el('tr', {}, ['Space', 'Subject', 'Predicate', 'Value', 'Valid from', 'Known since'].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, memory.map((f) => el('tr', {},
          el('td', { text: plain(f.space) }), el('td', { text: plain(f.subject) }), el('td', { text: plain(f.predicate) }),
          el('td', { text: plain(f.value) }), el('td', {}, formatTime(f.valid_from) ?? '—'), el('td', {}, formatTime(f.known_since) ?? '—'))))))));
  }

  const reviewers = Array.isArray(gate.reviewers) && gate.reviewers.length
    ? gate.reviewers.map((r) => el('code', { text: r }))
    : [el('span', { text: 'any registered reviewer' })];
  sections.push(el('p', { class: 'quorum' },
    el('strong', { text: 'Approvals: ' }), `${gate.approvals ?? 0} of ${gate.quorum ?? 1}`,
    el('span', { class: 'sep', 'aria-hidden': 'true', text: ' · ' }),
    el('strong', { text: 'Reviewers: ' }), ...reviewers.flatMap((r, i) => (i ? [', ', r] : [r]))));

  // The decision controls.
  const noteId = `${slug}-note`;
  const editFields = [];
  if (editable) {
    editFields.push(
      el('div', { class: 'field' }, el('label', { for: `${slug}-outcome`, text: 'Outcome' }),
        outcomeField(`${slug}-outcome`, gate.proposal.outcome, allowedOutcomes(gate))),
      el('div', { class: 'field' }, el('label', { for: `${slug}-reason`, text: 'Reason' }),
        el('textarea', { id: `${slug}-reason`, class: 'reason', name: 'reason', rows: 3 }, plain(gate.proposal.reason))));
  }
  if (isBudget) {
    editFields.push(el('div', { class: 'field' }, el('label', { for: `${slug}-amount`, text: 'Extend the budget by' }),
      el('input', { type: 'number', id: `${slug}-amount`, class: 'amount', name: 'amount', min: 1, step: 1, inputmode: 'numeric', value: gate.budget?.requested ?? '' })));
  }
  const disabledTitle = canDecide ? null : whyNot;
  const button = (cls, label, onclick, extra = {}) =>
    el('button', { type: 'button', class: cls, disabled: !canDecide, title: disabledTitle, onclick, ...extra }, label);
  const canEdit = editable || isBudget;
  const panel = el('div', { class: 'edit-fields', id: `${slug}-edits`, hidden: true },
    el('p', { class: 'help', text: isBudget && !editable ? 'Approve with a different amount.' : 'Change what the agent proposed; the journal records your edits as a signed diff.' }),
    editFields,
    el('div', { class: 'buttons' },
      el('button', { type: 'button', class: 'cancel-edits secondary', onclick: (e) => openEditPanel(e.target.closest('.gate'), false) }, 'Cancel edits')));

  const controls = state.me?.role !== 'reviewer'
    ? el('p', { class: 'look-only', text: 'Only reviewers decide gates; you are here to look.' })
    : el('div', { class: 'decide' },
      el('div', { class: 'field' },
        el('label', { for: noteId, text: 'Note (optional, recorded with your decision)' }),
        el('textarea', { id: noteId, class: 'note', name: 'note', rows: 2, maxlength: NOTE_BYTES_MAX, disabled: !canDecide })),
      canEdit ? panel : null,
      el('div', { class: 'buttons main' },
        button('approve primary', 'Approve', () => decide(gate, 'approve', false)),
        canEdit
          ? button('edit secondary', 'Approve with edits', (e) => {
              // First press opens the fields; with them open, it approves as edited.
              const card = e.target.closest('.gate');
              if (card.classList.contains('editing')) decide(gate, 'approve', true);
              else openEditPanel(card, true);
            }, { 'aria-expanded': 'false', 'aria-controls': `${slug}-edits` })
          : null,
        button('reject danger', 'Reject', () => decide(gate, 'reject', false))),
      canDecide ? null : el('p', { class: 'why-not', text: `You cannot decide this gate: ${whyNot}` }),
      el('p', { class: 'status', 'aria-live': 'polite' }));

  return el('section', { class: `gate kind-${isBudget ? 'budget' : 'case'}`, 'data-gate-id': id, 'aria-labelledby': `${slug}-title` },
    el('header', { class: 'gate-head' },
      el('h2', { id: `${slug}-title` }, gate.gate || 'gate', ' ', el('span', { class: 'tag', text: isBudget ? 'budget' : gate.question ? 'question' : 'case' })),
      meta),
    deadline,
    sections,
    controls);
}

/** How deep the page nests children (the server bounds the whole tree too). */
const TREE_DEPTH_MAX = 32;

/**
 * Who delegated this case and what it delegated (`gate.tree`): "Delegated
 * by" the parent case, and the children as nested lists (case, agent,
 * status, outcome and reason, each one's own children below it). Null
 * when the case neither was delegated nor delegated anything.
 */
function delegationBlock(tree) {
  if (!tree || typeof tree !== 'object') return null;
  const parent = tree.parent && typeof tree.parent === 'object' ? tree.parent : null;
  const children = Array.isArray(tree.children) ? tree.children : [];
  if (!parent && !children.length) return null;
  return el('div', { class: 'block delegation' },
    el('h3', { text: 'Delegation' }),
    parent
      ? el('p', { class: 'delegated-by' }, 'Delegated by ', el('code', { text: plain(parent.case_id) }), ` (${plain(parent.agent)})`,
          parent.status ? el('span', { class: 'muted', text: ` · ${plain(parent.status)}` }) : null)
      : null,
    children.length
      ? [el('p', { class: 'delegated-to', text: `Delegated ${children.length} sub-task${children.length === 1 ? '' : 's'}:` }),
          childList(children, 0)]
      : null,
    tree.truncated ? el('p', { class: 'muted', text: 'Too many sub-tasks to list: only the first are shown.' }) : null);
}

/** One level of the children, each with its own below it (text only). */
function childList(children, depth) {
  return el('ul', { class: 'tree' }, children.filter((c) => c && typeof c === 'object').map((c) => {
    const below = Array.isArray(c.children) ? c.children : [];
    const byReviewer = typeof c.decided_by === 'string' && c.decided_by !== 'agent' ? c.decided_by : null;
    return el('li', { class: 'tree-node', 'data-task': c.task },
      el('div', { class: 'tree-row' },
        el('code', { class: 'tree-case', text: plain(c.case_id) }), ' ',
        el('span', { class: 'tree-agent', text: `(${plain(c.agent)})` }), ' ',
        el('span', { class: 'tree-status', text: plain(c.status) }),
        c.outcome != null ? [' → ', el('span', { class: 'outcome-badge', text: plain(c.outcome) })] : null,
        byReviewer ? el('span', { class: 'muted', text: ` · decided by ${byReviewer}` }) : null,
        c.gate && c.status === 'awaiting_review' ? el('span', { class: 'muted', text: ' · waiting for review' }) : null),
      c.reason != null && c.reason !== '' ? el('p', { class: 'text tree-reason', text: plain(c.reason) }) : null,
      below.length && depth + 1 < TREE_DEPTH_MAX ? childList(below, depth + 1) : null,
      below.length && depth + 1 >= TREE_DEPTH_MAX ? el('p', { class: 'muted', text: `${below.length} more below, not shown` }) : null);
  }));
}

/** The outcomes the gate's mission allows, or null when it lists none. */
function allowedOutcomes(gate) {
  const outcomes = gate.decision_rules?.outcomes;
  if (!Array.isArray(outcomes)) return null;
  const strings = outcomes.filter((o) => typeof o === 'string' && o !== '');
  return strings.length ? strings : null;
}

/**
 * The outcome to approve with: a select box of the allowed outcomes when
 * the mission lists them (the server refuses any other), else free text.
 * A proposal outside the list is not offered: the reviewer must choose.
 */
function outcomeField(id, proposed, allowed) {
  if (!allowed) {
    return el('input', { type: 'text', id, class: 'outcome', name: 'outcome', value: plain(proposed), maxlength: 200 });
  }
  const listed = allowed.includes(proposed);
  return el('select', { id, class: 'outcome', name: 'outcome' },
    listed ? null : el('option', { value: '', selected: true, disabled: true, text: `choose (the agent proposed ${plain(proposed)})` }),
    allowed.map((outcome) => el('option', { value: outcome, selected: outcome === proposed, text: outcome })));
}

/** The decided gates, newest first, as table rows (text only). */
function renderDecided(decided) {
  const rows = decided
    .filter((g) => g && typeof g.id === 'string')
    .map((g) => el('tr', { 'data-gate-id': g.id },
      el('td', {}, el('strong', { text: plain(g.gate) }), g.mission ? el('div', { class: 'muted' }, el('code', { text: g.mission })) : null),
      el('td', {}, g.kind === 'budget' ? el('span', { class: 'muted', text: 'budget' }) : el('code', { text: plain(g.case_id) })),
      el('td', {}, el('span', { class: `verdict verdict-${String(g.status).replace(/[^a-z_]/g, '')}`, text: plain(g.status) })),
      el('td', { text: plain(g.outcome) }),
      el('td', {}, g.reviewer ? el('code', { text: g.reviewer }) : '—'),
      el('td', { class: 'text', text: plain(g.note) }),
      el('td', {}, formatTime(g.decided_at) ?? '—')));
  $('decided-rows').replaceChildren(...rows);
  $('decided').hidden = rows.length === 0;
  $('decided-empty').hidden = rows.length > 0;
  $('decided-count').textContent = rows.length ? `(${rows.length})` : '';
  if (!view().queue) $('gate-count').textContent = rows.length ? `(${rows.length})` : '';
}

/**
 * Opens or closes a card's edit fields. While they are open the plain
 * Approve button is hidden, so edits typed cannot be dropped by pressing
 * the wrong button: the edit button itself then approves as edited.
 */
function openEditPanel(card, open, focus = true) {
  const panel = card?.querySelector('.edit-fields');
  if (!panel) return;
  panel.hidden = !open;
  card.classList.toggle('editing', open);
  const edit = card.querySelector('.edit');
  if (edit) {
    edit.setAttribute('aria-expanded', String(open));
    edit.textContent = open ? 'Approve with these edits' : 'Approve with edits';
    edit.classList.toggle('primary', open);
    edit.classList.toggle('secondary', !open);
  }
  const approve = card.querySelector('.buttons.main .approve');
  if (approve) approve.hidden = open;
  if (open && focus) panel.querySelector('input, textarea')?.focus();
}

function setBusy(card, busy) {
  card.classList.toggle('busy', busy);
  card.setAttribute('aria-busy', String(busy));
  const canDecide = !card.querySelector('.why-not');
  for (const b of card.querySelectorAll('.approve, .reject, .edit')) b.disabled = busy || !canDecide;
}

function cardOf(gateId) {
  return [...$('gates').children].find((c) => c.dataset.gateId === gateId) ?? null;
}

// ------------------------------------------------------------- deciding

/** Reads the reviewer's input for a decision from the gate's card. */
function readDecision(gate, verdict, withEdits) {
  const card = cardOf(gate.id);
  const noteText = card?.querySelector('.note')?.value.trim() ?? '';
  if (encoder.encode(noteText).length > NOTE_BYTES_MAX) throw new Error(`The note is longer than ${NOTE_BYTES_MAX} bytes.`);
  const note = noteText === '' ? null : noteText;
  let edits = null;
  let amount = null;
  if (verdict === 'approve' && gate.kind === 'budget') {
    // A budget gate's approval extends the budget: by the amount typed when
    // approving with edits, else by what was asked for.
    const raw = withEdits ? card?.querySelector('.amount')?.value.trim() ?? '' : String(gate.budget?.requested ?? '');
    if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(Number(raw)) || Number(raw) <= 0) {
      throw new Error('The amount must be a whole number of budget units, above zero.');
    }
    amount = Number(raw);
  }
  if (verdict === 'approve' && withEdits && gate.proposal && !gate.question) {
    edits = {};
    for (const field of ['outcome', 'reason']) {
      const input = card?.querySelector(`.${field}`);
      const value = input?.value.trim() ?? '';
      if (value === '' && input instanceof HTMLSelectElement) throw new Error('Choose the outcome to approve with.');
      if (value === '') throw new Error(`The ${field} cannot be empty; use Reject to overrule the agent.`);
      if (value !== gate.proposal[field]) edits[field] = value;
    }
    if (Object.keys(edits).length === 0) {
      edits = null;
      if (gate.kind !== 'budget') throw new Error('Nothing was edited: change the outcome or the reason, or use Approve.');
    }
  }
  return { gate, verdict, note, edits, amount };
}

/**
 * Decides `gate`: prepare → check → sign → decide. The server builds the
 * entries (it knows the journal's head), the page checks every byte it is
 * asked to sign (see crypto.js checkPrepared for what and why), signs the
 * entry hashes with the reviewer's key, and sends the signatures back. If
 * the journal moved in between (409 with retry), the entries no longer
 * chain onto its head: prepare, check and sign again.
 */
async function decide(gate, verdict, withEdits) {
  if (!state.me || state.busy.has(gate.id)) return;
  let decision;
  try {
    decision = readDecision(gate, verdict, withEdits);
  } catch (e) {
    return say(e.message, 'error');
  }
  state.busy.add(gate.id);
  const card = cardOf(gate.id);
  if (card) setBusy(card, true);
  const status = (text) => {
    const line = cardOf(gate.id)?.querySelector('.status');
    if (line) line.textContent = text;
  };
  say(`${verdict === 'approve' ? 'Approving' : 'Rejecting'} gate ${gate.gate}…`, 'info');
  try {
    const body = { verdict, note: decision.note, edits: decision.edits, amount: decision.amount };
    const path = `/api/gates/${encodeURIComponent(gate.id)}`;
    let result = null;
    for (let attempt = 1; ; attempt++) {
      status(attempt === 1 ? 'preparing…' : `the journal moved; preparing again (attempt ${attempt} of ${DECIDE_ATTEMPTS})…`);
      const prepared = await api('POST', `${path}/prepare`, body);
      let checked;
      try {
        checked = checkPrepared(prepared, decision, state.me.publicKey);
      } catch (e) {
        // Never retried: a mismatch is not a race, it is the server asking
        // for a signature on something the reviewer did not decide.
        throw new Error(`Not signed: the conductor's prepared entry does not match your decision (${e.message}). Nothing was recorded.`);
      }
      status('signing…');
      const signatures = await signEntries(state.me.signingKey, checked);
      try {
        result = await api('POST', `${path}/decide`, { token: prepared.token, signatures });
        break;
      } catch (e) {
        if (e instanceof ApiError && e.status === 409 && e.body?.retry === true && attempt < DECIDE_ATTEMPTS) continue;
        throw e;
      }
    }
    say(outcomeText(gate, decision, result), 'ok');
  } catch (e) {
    if (state.me || !(e instanceof ApiError) || e.status !== 401) say(e.message, 'error');
  } finally {
    state.busy.delete(gate.id);
    status('');
    const after = cardOf(gate.id);
    if (after) setBusy(after, false);
    await refreshGates();
  }
}

function outcomeText(gate, decision, result) {
  const what = gate.case_id ? `for case ${gate.case_id}` : gate.mission ? `for mission ${gate.mission}` : '';
  const extended = decision.amount ? `; budget extended by ${decision.amount}` : '';
  if (result && result.closed === false) {
    const needed = result.needed ?? 1;
    return `Approval recorded; ${needed} more needed`;
  }
  if (result?.status === 'rejected') return `Rejected gate ${gate.gate} ${what}`.trim();
  if (result?.status === 'approved') return `Approved gate ${gate.gate} ${what}${extended}`.trim();
  return `Decision recorded on gate ${gate.gate} ${what}: ${plain(result?.status)}`.trim();
}

// ---------------------------------------------------------------- start

function start() {
  setState('signed-out');
  $('sign-in-form').addEventListener('submit', onSignIn);
  $('sign-out').addEventListener('click', onSignOut);
  $('refresh').addEventListener('click', () => refreshGates());
  if (!globalThis.crypto?.subtle) {
    say('This page needs WebCrypto, which browsers offer only on https or localhost pages: open the conductor over one of those.', 'error');
  }
  // The private key lives in this tab only; leaving the page forgets it.
  window.addEventListener('pagehide', () => signOutLocally(''));
}

start();
