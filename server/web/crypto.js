// The reviewer page's cryptography, kept apart from the DOM so it can be
// tested directly under Node (which has the same WebCrypto Ed25519).
//
// Three jobs:
//   1. unlock a reviewer's key file (Argon2id + XChaCha20-Poly1305, exactly
//      as identity/src/keyfile.rs and sealed.rs write it) into a
//      NON-extractable WebCrypto Ed25519 key that never leaves memory;
//   2. read the journal entries the server prepared for a decision
//      (canonical bytes as in ledger/src/entry.rs) and check that they say
//      what the reviewer decided, before anything is signed;
//   3. sign: the sign-in challenge and the entry hashes, each under its own
//      domain-separation prefix so one can never stand in for the other.
//
// Nothing here trusts the server: the server prepares, the browser checks
// and signs, and the server (and any auditor later) verifies.

import { argon2idAsync, blake3, xchacha20poly1305 } from './noble.js';

const subtle = globalThis.crypto?.subtle;
const encoder = new TextEncoder();
/** Strict UTF-8: invalid bytes are an error, not U+FFFD. */
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------- bytes

/** Lower-case hex of `bytes`. */
export function toHex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

/**
 * Decodes hex (either case) of exactly `length` bytes, or throws naming
 * `what` (never the value: it may be secret).
 */
export function fromHex(text, length, what) {
  if (typeof text !== 'string' || text.length !== length * 2 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new Error(`${what} must be ${length * 2} hex digits`);
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Standard base64 (with padding) to bytes; throws on anything else. */
export function fromBase64(text, what = 'base64 text') {
  if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new Error(`${what} is not base64`);
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Base64url without padding (JWK's encoding). */
export function toBase64Url(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// ------------------------------------------------------------ key files

const HEADER = 'conductor-key v1';
/** A key file is seven short lines; anything larger is not one of ours. */
export const KEY_FILE_BYTES_MAX = 4096;
const ROLES = ['conductor', 'agent', 'reviewer', 'operator', 'auditor'];

/**
 * Argon2id cost bounds, the same as identity/src/sealed.rs `KdfParams`:
 * the costs come from the file, so a hostile or corrupted file could
 * otherwise make the tab allocate gigabytes or spin for hours.
 */
export const KDF_LIMITS = Object.freeze({
  memoryKibMax: 1024 * 1024,
  passesMax: 16,
  lanesMax: 16,
  workMax: 4 * 1024 * 1024,
});

/** The error a failed unseal gives: a wrong passphrase and an edited file look the same. */
export const WRONG_PASSPHRASE = 'wrong passphrase, or the key file was altered';

/** Refuses KDF costs out of bounds, before any memory is allocated. */
export function checkKdf({ m, t, p }) {
  if (m > KDF_LIMITS.memoryKibMax) {
    throw new Error(`kdf memory m=${m} KiB is above the maximum of ${KDF_LIMITS.memoryKibMax} KiB`);
  }
  if (t < 1 || t > KDF_LIMITS.passesMax) throw new Error(`kdf passes t=${t} is outside 1..=${KDF_LIMITS.passesMax}`);
  if (p < 1 || p > KDF_LIMITS.lanesMax) throw new Error(`kdf lanes p=${p} is outside 1..=${KDF_LIMITS.lanesMax}`);
  if (m * t > KDF_LIMITS.workMax) {
    throw new Error(`kdf work m*t = ${m * t} KiB-passes is above the maximum of ${KDF_LIMITS.workMax}`);
  }
  // Argon2's own lower bound: at least 8 KiB per lane.
  if (m < 8 * p) throw new Error(`kdf memory m=${m} KiB is below Argon2's minimum of 8 KiB per lane`);
}

/** Parses the value of a `kdf:` line: exactly `argon2id m=<KiB> t=<passes> p=<lanes>`. */
export function parseKdf(value) {
  const match = /^argon2id m=(\d{1,10}) t=(\d{1,10}) p=(\d{1,10})$/.exec(value);
  if (!match) throw new Error('kdf: expected `argon2id m=<KiB> t=<passes> p=<lanes>`');
  const [m, t, p] = match.slice(1).map(Number);
  if (![m, t, p].every((n) => n <= 0xffffffff)) throw new Error('kdf: a cost does not fit in 32 bits');
  const kdf = { m, t, p };
  checkKdf(kdf);
  return kdf;
}

/**
 * Parses a key file's text (see identity/src/keyfile.rs), plain or sealed,
 * without decrypting anything. Field errors name the field, never its value.
 */
export function parseKeyFile(text) {
  if (typeof text !== 'string') throw new Error('key file: not text');
  if (encoder.encode(text).length > KEY_FILE_BYTES_MAX) throw new Error('key file: larger than any key file');
  // Rust's str::lines(): split on \n, drop one \r before it, no final empty line.
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const clean = lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (clean[0] !== HEADER) throw new Error(`key file: first line is not \`${HEADER}\``);
  const known = ['role', 'public', 'secret', 'kdf', 'salt', 'nonce', 'sealed-secret'];
  const fields = new Map();
  for (const line of clean.slice(1)) {
    const at = line.indexOf(': ');
    if (at < 0) throw new Error('key file: expected `name: value` lines');
    const name = line.slice(0, at);
    if (!known.includes(name)) throw new Error(`key file: unknown field \`${name}\``);
    if (fields.has(name)) throw new Error(`key file: field \`${name}\` appears more than once`);
    fields.set(name, line.slice(at + 2));
  }
  const role = fields.get('role');
  if (role === undefined) throw new Error('key file: missing `role`');
  if (!ROLES.includes(role)) throw new Error('key file: unknown role');
  if (!fields.has('public')) throw new Error('key file: missing `public`');
  const publicKey = fromHex(fields.get('public'), 32, 'key file: `public`');
  const sealedFields = ['kdf', 'salt', 'nonce', 'sealed-secret'];
  const present = sealedFields.filter((f) => fields.has(f));
  if (fields.has('secret')) {
    if (present.length) throw new Error('key file: has both a plain `secret` and encryption fields');
    return { role, publicKey, sealed: false, secret: fromHex(fields.get('secret'), 32, 'key file: `secret`') };
  }
  if (present.length === 0) throw new Error('key file: missing `secret` (or `sealed-secret`)');
  if (present.length !== sealedFields.length) {
    throw new Error('key file: an encrypted key file needs all of `kdf`, `salt`, `nonce` and `sealed-secret`');
  }
  return {
    role,
    publicKey,
    sealed: true,
    kdf: parseKdf(fields.get('kdf')), // bounds checked here, before any work
    salt: fromHex(fields.get('salt'), 16, 'key file: `salt`'),
    nonce: fromHex(fields.get('nonce'), 24, 'key file: `nonce`'),
    sealedSecret: fromHex(fields.get('sealed-secret'), 48, 'key file: `sealed-secret`'),
  };
}

/**
 * What a sealed file's ciphertext is bound to: its first four lines,
 * rebuilt canonically from the parsed values (so CRLF line endings picked
 * up on the way do not matter), exactly as keyfile.rs `associated_data`.
 */
export function associatedData(file) {
  const { m, t, p } = file.kdf;
  return encoder.encode(
    `${HEADER}\nrole: ${file.role}\npublic: ${toHex(file.publicKey)}\nkdf: argon2id m=${m} t=${t} p=${p}\n`,
  );
}

/**
 * The 32-byte Ed25519 seed of a parsed key file. A sealed file is opened
 * with `passphrase` (Argon2id v1.3, then XChaCha20-Poly1305); a wrong
 * passphrase and an edited header both fail the tag check and give
 * WRONG_PASSPHRASE. `onProgress(fraction)` follows the Argon2id work.
 * The caller owns the returned bytes and must zero them.
 */
export async function unsealSecret(file, passphrase, onProgress) {
  if (!file.sealed) return Uint8Array.from(file.secret);
  if (typeof passphrase !== 'string' || passphrase === '') throw new Error('this key file needs its passphrase');
  checkKdf(file.kdf); // again, in case a caller built `file` by hand
  // UTF-8 bytes as typed: no trimming, no Unicode normalisation (as sealed.rs).
  const password = encoder.encode(passphrase);
  let key;
  try {
    // The async variant yields to the event loop every few milliseconds,
    // so the page keeps painting its progress during the seconds this takes.
    key = await argon2idAsync(password, file.salt, {
      m: file.kdf.m,
      t: file.kdf.t,
      p: file.kdf.p,
      dkLen: 32,
      version: 0x13,
      maxmem: file.kdf.m * 1024,
      asyncTick: 16,
      onProgress,
    });
  } finally {
    password.fill(0);
  }
  try {
    const cipher = xchacha20poly1305(key, file.nonce, associatedData(file));
    try {
      return cipher.decrypt(file.sealedSecret);
    } catch {
      throw new Error(WRONG_PASSPHRASE);
    }
  } finally {
    key.fill(0);
  }
}

/**
 * Imports `seed` as a NON-extractable Ed25519 signing key (the seed is
 * zeroed here, whatever happens), then proves the pair: a fresh random
 * message signed with it must verify under `publicKey`, the key the file
 * (and so the journal's registration) names. A file whose public line
 * does not belong to its secret is refused rather than discovered later
 * as signatures the server rejects.
 */
export async function importSigningKey(seed, publicKey) {
  if (!subtle) {
    throw new Error('this browser offers no WebCrypto here; open the page over https or on localhost');
  }
  let signingKey;
  try {
    if (seed.length !== 32) throw new Error('the secret key is not 32 bytes');
    // JWK is the one import format for a raw Ed25519 seed. The JWK's
    // strings cannot be wiped, but they are dropped right after.
    signingKey = await subtle.importKey(
      'jwk',
      { kty: 'OKP', crv: 'Ed25519', d: toBase64Url(seed), x: toBase64Url(publicKey) },
      { name: 'Ed25519' },
      false,
      ['sign'],
    );
  } catch (e) {
    if (e instanceof Error && e.message === 'the secret key is not 32 bytes') throw e;
    throw new Error(`the key file's secret and public key do not form an Ed25519 key pair (${e?.message ?? e})`);
  } finally {
    seed.fill(0);
  }
  const verifyKey = await importPublicKey(publicKey);
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const signature = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, signingKey, probe));
  if (!(await subtle.verify({ name: 'Ed25519' }, verifyKey, signature, probe))) {
    throw new Error("the key file's public key does not belong to its secret key");
  }
  return signingKey;
}

/** A raw 32-byte Ed25519 public key as a WebCrypto verification key. */
export function importPublicKey(publicKey) {
  return subtle.importKey('raw', publicKey, { name: 'Ed25519' }, true, ['verify']);
}

/**
 * The whole unlock: text of a key file and its passphrase to
 * `{role, publicKey, publicHex, signingKey}` where `signingKey` is a
 * non-extractable CryptoKey. `roles` (a list) refuses other roles before
 * the (slow) KDF runs.
 */
export async function unlockKeyFile(text, passphrase, { onProgress, roles } = {}) {
  const file = parseKeyFile(text);
  if (roles && !roles.includes(file.role)) {
    throw new Error(`this is ${/^[aeiou]/.test(file.role) ? 'an' : 'a'} ${file.role} key; sign in with a ${roles.join(', ').replace(/, ([^,]*)$/, ' or $1')} key`);
  }
  const seed = await unsealSecret(file, passphrase, onProgress);
  if (!file.sealed) file.secret.fill(0);
  const signingKey = await importSigningKey(seed, file.publicKey);
  return { role: file.role, publicKey: file.publicKey, publicHex: toHex(file.publicKey), signingKey };
}

/** Ed25519 signature (64 bytes) of `message` with a WebCrypto key. */
export async function sign(signingKey, message) {
  return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, signingKey, message));
}

// -------------------------------------------------------------- sign-in

export const SIGN_IN_DOMAIN = encoder.encode('conductor sign-in v1\0');

/** What a sign-in signs: the domain prefix, then the server's 32-byte challenge. */
export function signInMessage(challenge) {
  if (challenge.length !== 32) throw new Error('the challenge is not 32 bytes');
  return concat(SIGN_IN_DOMAIN, challenge);
}

// ------------------------------------------------------ journal entries

export const MAGIC = encoder.encode('CJE1');
export const HASH_CONTEXT = encoder.encode('conductor journal entry v1');
export const SIGNATURE_DOMAIN = encoder.encode('conductor journal signature v1\0');
/** Bounds from ledger/src/entry.rs. */
export const KIND_BYTES_MAX = 64;
export const PAYLOAD_BYTES_MAX = 4 << 20;
/** How far an entry's time may be from this computer's clock: one hour. */
export const TIME_SKEW_US_MAX = 3600n * 1000000n;
/** The clock, in milliseconds; replaceable for tests. */
let now = () => Date.now();
export function setClockForTests(clock) {
  now = clock;
}
/** The only kinds a reviewer's decision may consist of. */
export const REVIEWER_KINDS = Object.freeze(['gate.decided', 'gate.voted', 'budget.extended']);

/**
 * Decodes an entry's canonical bytes (big-endian; see ledger/src/entry.rs):
 * magic "CJE1", seq u64, prev [32], time_us i64, signer [32], kind length
 * u16, kind ASCII, payload length u32, payload UTF-8 JSON. Every length is
 * checked before use and the buffer must be consumed exactly, so no bytes
 * can hide after the payload that the reviewer did not see.
 */
export function parseCanonical(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new Error('entry: not bytes');
  const fixed = 4 + 8 + 32 + 8 + 32 + 2 + 4;
  if (bytes.length < fixed) throw new Error('entry: shorter than the fixed fields');
  if (!equalBytes(bytes.subarray(0, 4), MAGIC)) throw new Error('entry: magic is not CJE1');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const seq = view.getBigUint64(4);
  const prev = bytes.slice(12, 44);
  const timeUs = view.getBigInt64(44);
  const signer = bytes.slice(52, 84);
  const kindLen = view.getUint16(84);
  if (kindLen > KIND_BYTES_MAX) throw new Error('entry: kind longer than allowed');
  const kindEnd = 86 + kindLen;
  if (bytes.length < kindEnd + 4) throw new Error('entry: shorter than its kind length says');
  const kindBytes = bytes.subarray(86, kindEnd);
  if (!kindBytes.every((b) => b >= 0x20 && b < 0x7f)) throw new Error('entry: kind is not printable ASCII');
  const kind = String.fromCharCode(...kindBytes);
  const payloadLen = view.getUint32(kindEnd);
  if (payloadLen > PAYLOAD_BYTES_MAX) throw new Error('entry: payload longer than allowed');
  const payloadStart = kindEnd + 4;
  if (bytes.length !== payloadStart + payloadLen) {
    throw new Error('entry: length does not match its payload length');
  }
  const payloadBytes = bytes.slice(payloadStart);
  let payloadText;
  try {
    payloadText = utf8Strict.decode(payloadBytes);
  } catch {
    throw new Error('entry: payload is not UTF-8');
  }
  let payload;
  try {
    payload = JSON.parse(payloadText);
  } catch {
    throw new Error('entry: payload is not JSON');
  }
  return { seq, prev, timeUs, signer, kind, payloadBytes, payloadText, payload };
}

/** The entry hash: BLAKE3 derive_key("conductor journal entry v1", canonical). */
export function entryHash(canonical) {
  return blake3(canonical, { context: HASH_CONTEXT, dkLen: 32 });
}

/** What an entry's signature covers: the domain prefix, then the entry hash. */
export function entrySignatureMessage(hash) {
  if (hash.length !== 32) throw new Error('an entry hash is 32 bytes');
  return concat(SIGNATURE_DOMAIN, hash);
}

function sameJson(a, b) {
  return JSON.stringify(canonicalJson(a)) === JSON.stringify(canonicalJson(b));
}

/** A copy of a JSON value with object keys sorted, for comparison. */
function canonicalJson(value) {
  if (Array.isArray(value)) return value.map(canonicalJson);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonicalJson(value[k])]));
  }
  return value;
}

/**
 * Checks the entries the server prepared for a decision, and returns the
 * messages to sign (one per entry, in order). The browser refuses to sign
 * blindly: the server could be compromised or simply wrong, and the
 * signature is the reviewer's, binding in the journal for good. So each
 * entry is decoded from its own bytes (never from the server's summary)
 * and must be exactly the decision the reviewer asked for:
 *
 *  - signed as this reviewer (a signature of someone else's entry would be
 *    useless at best, and the entry must not claim another signer);
 *  - seq and kind as listed, the kinds only those a reviewer's decision
 *    makes, consecutive and chained (each `prev` is the hash before it);
 *  - the gate entry names the gate on screen (id, and its mission, case
 *    and name where the payload states them), the verdict chosen, the note
 *    typed and the edits made;
 *  - a budget extension only with an approval of a budget gate, for the
 *    amount typed (and the gate's account);
 *  - the hash recomputed here from the bytes equals the one the server
 *    gave, so what is signed is the hash of what was checked.
 *
 * `decision`: {gate, verdict: 'approve'|'reject', note: string|null,
 * edits: object|null, amount: number|null}. Throws an Error saying what
 * did not match.
 */
export function checkPrepared(prepared, decision, publicKey) {
  const { gate, verdict, note, edits, amount } = decision;
  const entries = prepared?.entries;
  if (!Array.isArray(entries) || entries.length === 0) throw new Error('the server prepared no entries to sign');
  if (entries.length > 8) throw new Error('the server prepared more entries than a decision makes');
  const expectedVerdict = verdict === 'approve' ? 'approved' : verdict === 'reject' ? 'rejected' : null;
  if (!expectedVerdict) throw new Error(`unknown verdict ${verdict}`);
  const checked = [];
  let gateEntries = 0;
  let budgetEntries = 0;
  let decided = false;
  for (const [i, listed] of entries.entries()) {
    const where = `entry ${i + 1} of ${entries.length}`;
    const canonical = fromBase64(listed?.canonical, `${where}: canonical`);
    const entry = parseCanonical(canonical);
    if (!equalBytes(entry.signer, publicKey)) throw new Error(`${where}: would be signed as another key`);
    if (!Number.isSafeInteger(listed.seq) || listed.seq < 0 || BigInt(listed.seq) !== entry.seq) {
      throw new Error(`${where}: seq ${entry.seq} is not the listed ${listed.seq}`);
    }
    if (entry.kind !== listed.kind) throw new Error(`${where}: kind ${entry.kind} is not the listed ${listed.kind}`);
    if (listed.time_us !== undefined && !(Number.isSafeInteger(listed.time_us) && BigInt(listed.time_us) === entry.timeUs)) {
      throw new Error(`${where}: time ${entry.timeUs} is not the listed ${listed.time_us}`);
    }
    // The reviewer signs the entry's time too: refuse one that is far from
    // this computer's clock (a decision back- or forward-dated, say around
    // a deadline). Wide enough for ordinary clock drift.
    const skewUs = entry.timeUs - BigInt(Math.round(now() * 1000));
    if (skewUs > TIME_SKEW_US_MAX || skewUs < -TIME_SKEW_US_MAX) {
      throw new Error(`${where}: is dated ${new Date(Number(entry.timeUs / 1000n)).toISOString()}, far from this computer's clock`);
    }
    if (!REVIEWER_KINDS.includes(entry.kind)) throw new Error(`${where}: a reviewer does not sign ${entry.kind}`);
    if (i > 0) {
      const before = checked[i - 1];
      if (entry.seq !== before.entry.seq + 1n) throw new Error(`${where}: does not follow the entry before it`);
      if (!equalBytes(entry.prev, before.hash)) throw new Error(`${where}: is not chained to the entry before it`);
    }
    const payload = entry.payload;
    if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new Error(`${where}: payload is not a JSON object`);
    }
    if (entry.kind === 'gate.decided' || entry.kind === 'gate.voted') {
      gateEntries++;
      if (entry.kind === 'gate.decided') decided = true;
      checkGatePayload(where, entry.kind, payload, decision, expectedVerdict);
    } else {
      budgetEntries++;
      if (verdict !== 'approve') throw new Error(`${where}: extends a budget, but the decision is a rejection`);
      if (gate.kind !== 'budget') throw new Error(`${where}: extends a budget, but this is not a budget gate`);
      if (amount === null || amount === undefined) throw new Error(`${where}: extends a budget by an amount not given`);
      if (!Number.isSafeInteger(payload.amount) || payload.amount !== amount) {
        throw new Error(`${where}: extends the budget by ${payload.amount}, not the ${amount} entered`);
      }
      if (gate.budget?.account != null && payload.account !== gate.budget.account) {
        throw new Error(`${where}: extends account ${payload.account}, not this gate's ${gate.budget.account}`);
      }
    }
    const hash = entryHash(canonical);
    const stated = fromHex(listed.hash, 32, `${where}: hash`);
    if (!equalBytes(hash, stated)) throw new Error(`${where}: its hash is not the hash of its bytes`);
    checked.push({ entry, hash, message: entrySignatureMessage(hash) });
  }
  if (gateEntries !== 1) throw new Error(`the prepared entries record ${gateEntries} gate decisions, not one`);
  if (budgetEntries > 1) throw new Error('the prepared entries extend a budget more than once');
  if (budgetEntries === 1 && !decided) throw new Error('a budget is extended only once the gate is decided');
  if (gate.kind === 'budget' && verdict === 'approve' && decided && budgetEntries === 0 && amount) {
    throw new Error('the approval of this budget gate does not extend the budget');
  }
  return checked;
}

function checkGatePayload(where, kind, payload, decision, expectedVerdict) {
  const { gate, note, edits } = decision;
  if (payload.gate_id !== gate.id) throw new Error(`${where}: decides gate ${payload.gate_id}, not ${gate.id}`);
  if (payload.verdict !== expectedVerdict) throw new Error(`${where}: says ${payload.verdict}, not ${expectedVerdict}`);
  if (kind === 'gate.voted' && expectedVerdict !== 'approved') throw new Error(`${where}: a rejection is never a vote`);
  // What the reviewer saw on the card must be what the entry names.
  for (const [field, shown] of [['mission', gate.mission], ['case', gate.case_id], ['gate', gate.gate], ['task', gate.task]]) {
    if (field in payload && shown !== undefined && shown !== null && payload[field] !== shown) {
      throw new Error(`${where}: names ${field} ${payload[field]}, not ${shown}`);
    }
  }
  if ('note' in payload && (payload.note ?? null) !== (note ?? null)) {
    throw new Error(`${where}: carries a note other than the one typed`);
  }
  const mine = edits ?? {};
  if (Object.keys(mine).length === 0) {
    // A plain approval: no edit may be attributed to this vote.
    if (kind === 'gate.voted' && payload.edits && Object.keys(payload.edits).length) {
      throw new Error(`${where}: records edits that were not made`);
    }
    return;
  }
  const recorded = payload.edits;
  if (!recorded || typeof recorded !== 'object') throw new Error(`${where}: does not record the edits`);
  for (const [field, value] of Object.entries(mine)) {
    if (kind === 'gate.voted') {
      // A vote records the reviewer's edits as made.
      if (!sameJson(recorded[field], value)) throw new Error(`${where}: records a different ${field} than the one typed`);
    } else {
      // A decision records the merged edits as a diff {from, to} against the
      // agent's proposal; an edit equal to the proposal is no change at all.
      const diff = recorded[field];
      const proposed = gate.proposal?.[field];
      const ok = diff ? sameJson(diff.to, value) : sameJson(proposed, value);
      if (!ok) throw new Error(`${where}: records a different ${field} than the one typed`);
    }
  }
  if (kind === 'gate.voted') {
    for (const field of Object.keys(recorded)) {
      if (!(field in mine)) throw new Error(`${where}: records an edit of ${field} that was not made`);
    }
  }
}

/** Signs the checked entries in order; hex signatures for /decide. */
export async function signEntries(signingKey, checked) {
  const out = [];
  for (const { message } of checked) out.push(toHex(await sign(signingKey, message)));
  return out;
}
