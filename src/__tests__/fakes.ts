import { IWireEvent } from '../batches';
import { ITransport, ITransportResponse } from '../queue';

/** A posted batch, parsed, and when it was posted (fake time). */
export interface IPosted {
  events: IWireEvent[];
  sent_at: string;
  at: number;
}

/**
 * A transport that records what is posted and answers from a script (200 "recorded" by default).
 */
export class FakeTransport implements ITransport {
  posts: IPosted[] = [];
  keepalives: string[] = [];
  replies: (Partial<ITransportResponse> | Error)[] = [];

  post(body: string): Promise<ITransportResponse> {
    const posted = { ...JSON.parse(body), at: Date.now() } as IPosted;
    this.posts.push(posted);
    const reply = this.replies.shift() ?? {};
    if (reply instanceof Error) {
      return Promise.reject(reply);
    }
    const results = posted.events.map(() => ({ status: 'recorded' }));
    return Promise.resolve({ status: 200, retryAfter: null, body: { results }, ...reply });
  }

  postKeepalive(body: string): void {
    this.keepalives.push(body);
  }

  /** The ids posted so far, in order. */
  get ids(): string[] {
    return this.posts.flatMap(b => b.events.map(e => e.id));
  }

  /** The ids sent with keepalive so far, in order. */
  get keepaliveIds(): string[] {
    return this.keepalives.flatMap(b => (JSON.parse(b) as IPosted).events.map(e => e.id));
  }
}

/** An event with a given id and optional padding to make it large. */
export function event(id: string | number, padding = 0): IWireEvent {
  return {
    schema_id: 'https://example.org/test',
    version: 1,
    data: { action: 'x', pad: 'é'.repeat(padding) },
    id: String(id),
    timestamp: '2026-01-01T00:00:00.000Z'
  };
}

export function events(from: number, to: number): IWireEvent[] {
  return Array.from({ length: to - from }, (_, i) => event(from + i));
}
