// The part of lzma-native (liblzma bindings) Airlock uses: a streaming .xz decoder with a memory limit.
declare module 'lzma-native' {
  import type { Duplex } from 'node:stream';
  const lzma: {
    createStream(coder: 'streamDecoder' | 'easyEncoder', options: { memlimit?: number; flags?: number; synchronous?: boolean }): Duplex;
    LZMA_CONCATENATED: number;
  };
  export default lzma;
}
