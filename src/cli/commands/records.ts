import { loadConfig } from '../../config/load.js';
import { parseTime } from '../../core/time.js';
import { RECORD_CODE_LIST, isRecordCode } from '../../core/record-codes.js';
import { parseSignature, signerLabel } from '../../signing/record.js';
import { isDecision, type PullFilter, type StoredPullRecord } from '../../storage/meta-store.js';
import { pullPages } from '../../storage/pull-pages.js';
import { fail, withMeta, type Command } from './shared.js';

/** `airlock records`: list pull records, newest first, filtered, as tab-separated lines or JSON. */
export const records: Command = {
  summary: [
    {
      synopsis: [
        'airlock records [--config FILE] [--name N] [--ecosystem E] [--decision allow|deny|error]',
        '                [--code CODE] [--since TIME] [--until TIME] [--limit N] [--json]',
      ],
      text: [
        'list pull records (newest first); a folded row ends with its count (xN until TIME),',
        'a signature-checked one with its signer (signer: WHO); --code: rows with that record code',
      ],
    },
  ],
  async run({ values, configFile }) {
    const loaded = loadConfig(configFile);
    const f: PullFilter = {
      name: values.name,
      ecosystem: values.ecosystem as PullFilter['ecosystem'],
      decision: values.decision as PullFilter['decision'],
      code: values.code,
      since: parseTime(values.since, '--since'),
      until: parseTime(values.until, '--until'),
      limit: values.limit === undefined ? 100 : Number(values.limit),
    };
    if (f.decision !== undefined && !isDecision(f.decision)) fail(`--decision: expected allow, deny or error, got ${JSON.stringify(f.decision)}`);
    if (f.code !== undefined && !isRecordCode(f.code)) fail(`--code: not a record code: ${JSON.stringify(f.code)} (one of ${RECORD_CODE_LIST.join(', ')})`);
    if (!Number.isInteger(f.limit) || f.limit! < 1) fail(`--limit: expected a positive whole number, got ${JSON.stringify(values.limit)}`);
    // A folded row (repeated identical refusals) ends with its count and the time of its last event.
    const folded = (r: StoredPullRecord) => (r.count != null ? [`x${r.count} until ${new Date(r.lastTs ?? r.ts).toISOString()}`] : []);
    // What verified the artefact (issue 26): its signer, at the end like a fold; in JSON, the parsed object.
    const signer = (r: StoredPullRecord) => {
      const s = parseSignature(r.signature);
      return s ? [`signer: ${signerLabel(s)}`] : [];
    };
    const line = (r: StoredPullRecord) =>
      [
        new Date(r.ts).toISOString(),
        r.client,
        r.ecosystem,
        r.name,
        r.version ?? '-',
        r.filename ?? '-',
        r.cache,
        r.decision,
        r.reason ?? '',
        ...folded(r),
        ...signer(r),
      ].join('\t') + '\n';
    // JSON as one array, written element by element in JSON.stringify(rows, null, 2)'s layout: each
    // line indented (split on \n alone: U+2028 and U+2029, raw inside JSON strings, end a line for /^/m).
    const element = (r: StoredPullRecord) =>
      '  ' + JSON.stringify(r.signature ? { ...r, signature: parseSignature(r.signature) ?? r.signature } : r, null, 2).replaceAll('\n', '\n  ');
    // Any --limit is honoured, a page at a time (pull-pages.ts): memory stays one page, output starts at once.
    let n = 0;
    await withMeta(loaded, true, async (meta) => {
      for await (const rows of pullPages(meta, f)) {
        const text = rows.map((r) => (values.json ? `${n++ ? ',\n' : '[\n'}${element(r)}` : line(r))).join('');
        if (!process.stdout.write(text)) await new Promise((r) => process.stdout.once('drain', r));
      }
    });
    if (values.json) process.stdout.write(n ? '\n]\n' : '[]\n');
  },
};
