// A Server-Sent Events reader over fetch, for the dashboard tests: the
// events of one stream, parsed as the EventSource specification does
// (fields per line, events ended by a blank line).
import type { DashboardSnapshot } from '../../lib/dashboard/index.js';

export interface StreamEvent {
  event: string;
  data: string;
  id?: string;
  retry?: number;
}

export interface EventStream {
  response: Response;
  /** The next event (retry-only blocks included), or an error after `timeoutMs`. */
  next(timeoutMs?: number): Promise<StreamEvent>;
  /** The next `snapshot` event's data. */
  snapshot(timeoutMs?: number): Promise<DashboardSnapshot>;
  close(): Promise<void>;
}

export async function openEventStream(url: string, init: RequestInit = {}): Promise<EventStream> {
  const controller = new AbortController();
  const response = await fetch(url, { ...init, signal: controller.signal });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = false;

  const parse = (block: string): StreamEvent => {
    const event: StreamEvent = { event: 'message', data: '' };
    const data: string[] = [];
    for (const line of block.split('\n')) {
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event.event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') event.id = value;
      else if (field === 'retry') event.retry = Number(value);
    }
    event.data = data.join('\n');
    return event;
  };

  const next = async (timeoutMs = 5000): Promise<StreamEvent> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        return parse(block);
      }
      if (ended) throw new Error('the event stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        reader.read(),
        new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, left, 'timeout'))),
      ]).finally(() => clearTimeout(timer));
      if (chunk === 'timeout') throw new Error(`no event within ${timeoutMs} ms`);
      if (chunk.done) ended = true;
      else buffer += decoder.decode(chunk.value, { stream: true });
    }
  };

  return {
    response,
    next,
    async snapshot(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const event = await next(Math.max(1, deadline - Date.now()));
        if (event.event === 'snapshot') return JSON.parse(event.data) as DashboardSnapshot;
      }
    },
    async close() {
      controller.abort();
      await reader.cancel().catch(() => undefined);
    },
  };
}

/** Reads until the stream ends; resolves true when it did within `timeoutMs`. */
export async function streamEnds(stream: EventStream, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await stream.next(Math.max(1, deadline - Date.now()));
    } catch (error) {
      return (error as Error).message === 'the event stream ended';
    }
  }
}
