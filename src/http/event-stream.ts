/**
 * Per-timestep results as a stream of events: Server-Sent Events or NDJSON, whichever the
 * client's Accept header asks for. Each event is written as soon as it happens; the stream
 * ends after the last.
 */
import { PassThrough } from 'node:stream';

export type StreamFormat = 'sse' | 'ndjson';

export const STREAM_MEDIA_TYPES: Record<StreamFormat, string> = {
  sse: 'text/event-stream',
  ndjson: 'application/x-ndjson',
};

/** The stream format the client asks for, or undefined for a single JSON answer. */
export function streamFormat(accept: string | undefined): StreamFormat | undefined {
  if (!accept) return undefined;
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
  if (types.includes(STREAM_MEDIA_TYPES.sse)) return 'sse';
  if (types.includes(STREAM_MEDIA_TYPES.ndjson)) return 'ndjson';
  return undefined;
}

/** One event in `format`: SSE names it in its own field, NDJSON in the object's `type`. */
export function encodeEvent(format: StreamFormat, event: string, data: object): string {
  return format === 'sse'
    ? `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    : `${JSON.stringify({ type: event, ...data })}\n`;
}

/** A stream to send, and a function that writes one event to it. */
export function eventStream(format: StreamFormat) {
  const stream = new PassThrough();
  return {
    stream,
    write: (event: string, data: object) => stream.write(encodeEvent(format, event, data)),
    end: () => stream.end(),
  };
}
