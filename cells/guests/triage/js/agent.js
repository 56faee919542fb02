// The triage agent in JavaScript (componentize-js); see ../README.md.
//
// Imports are named by interface and version; functions and record fields
// are camelCase. An import's `err` arrives as a thrown ComponentError (its
// `.payload` is the text), which we let propagate: a thrown string becomes
// this export's `err`, and a thrown Error object would trap, so errors are
// rethrown as strings.
import { log, recall, remember, infer, requestReview } from 'conductor:agent/host@0.2.4';

const LANG = 'js';
const POLICY = 'policy:triage';
const GATE = 'large-amount';
const DEFAULT_MODEL = 'smollm2-135m';
const SUMMARY_TOKENS = 8;

function host(call) {
  try {
    return call();
  } catch (e) {
    throw typeof e === 'string' ? e : String(e.payload ?? e);
  }
}

export function run(input) {
  let c;
  try {
    c = JSON.parse(input);
  } catch (e) {
    throw `input: ${e.message}`;
  }
  if (typeof c.id !== 'string') throw 'input: `id` is not a string';
  if (!Number.isSafeInteger(c.amount)) throw 'input: `amount` is not an integer';
  const model = typeof c._model === 'string' ? c._model : DEFAULT_MODEL;
  log(`triage[${LANG}] ${c.id}`);

  const values = host(() => recall(POLICY, undefined))
    .filter((f) => f.predicate === 'review-above')
    .map((f) => f.value);
  if (values.length === 0) throw `no review-above in ${POLICY}`;
  if (!/^-?[0-9]+$/.test(values[0])) throw `review-above: not an integer: ${values[0]}`;
  const limit = Number(values[0]);
  const summary = host(() =>
    infer(
      model,
      [
        { role: 'system', content: 'Summarise the case in five words.' },
        { role: 'user', content: `Case ${c.id}: amount ${c.amount}` },
      ],
      SUMMARY_TOKENS,
    ),
  );
  host(() => remember(`case:${c.id}`, 'triaged-by', LANG, undefined));
  let outcome = 'accept';
  if (c.amount > limit) {
    host(() => requestReview(GATE, `amount ${c.amount} above ${limit}`));
    outcome = 'refer';
  }
  const details = {
    lang: LANG,
    limit,
    prompt_tokens: summary.promptTokens,
    completion_tokens: summary.completionTokens,
  };
  return { outcome, reason: `amount ${c.amount} vs limit ${limit}`, details: JSON.stringify(details) };
}
