import { pino, type Logger } from 'pino';

export type { Logger };

/** pino JSON logs; credentials are redacted wherever they could appear. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'airlock' },
      redact: { paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'token'], censor: '[redacted]' },
    },
    destination as pino.DestinationStream | undefined,
  );
}
