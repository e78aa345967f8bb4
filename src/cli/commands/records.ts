import { loadConfig } from '../../config/load.js';
import { parseTime } from '../../core/time.js';
import { RECORD_CODE_LIST, isRecordCode } from '../../core/record-codes.js';
import { parseSignature, signerLabel } from '../../signing/record.js';
import { isDecision, type PullFilter } from '../../storage/meta-store.js';
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
    const rows = await withMeta(loaded, true, (meta) => meta.listPulls(f));
    // A folded row (repeated identical refusals) ends with its count and the time of its last event.
    const folded = (r: (typeof rows)[number]) => (r.count != null ? [`x${r.count} until ${new Date(r.lastTs ?? r.ts).toISOString()}`] : []);
    // What verified the artefact (issue 26): its signer, at the end like a fold; in JSON, the parsed object.
    const signer = (r: (typeof rows)[number]) => {
      const s = parseSignature(r.signature);
      return s ? [`signer: ${signerLabel(s)}`] : [];
    };
    if (values.json) {
      const out = rows.map((r) => (r.signature ? { ...r, signature: parseSignature(r.signature) ?? r.signature } : r));
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      return;
    }
    for (const r of rows) {
      process.stdout.write(
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
        ].join('\t') + '\n',
      );
    }
  },
};
