import { ServerConnection } from '@jupyterlab/services';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  ConsentModel,
  DecideResult,
  DecisionWord,
  IConsentApi,
  IStudy,
  ServerConsentApi,
  askInTurn,
  choiceLabel,
  choices,
  recordingState
} from '../consent';
import { EventQueue } from '../queue';
import { ISchemaSummary, RecordedSchemas } from '../schemas';
import { Telemetry } from '../telemetry';
import { FakeTransport } from './fakes';

const CELL = 'https://events.jupyter.org/jupyter_telemetry_ext/cell';

afterEach(() => {
  vi.restoreAllMocks();
});

function study(name: string, extra: Partial<IStudy> = {}): IStudy {
  return {
    study: name,
    title: `Study ${name}`,
    text: '**Read** me',
    version: 1,
    mode: 'opt-in',
    decision: null,
    decided_at: null,
    recording: false,
    ...extra
  };
}

/**
 * A server's consent routes in memory: PUT checks the version (409 when stale) and changes
 * the decision; `bump` raises a study's version as an admin would.
 */
class FakeApi implements IConsentApi {
  constructor(public studies: IStudy[]) {}
  puts: [string, DecisionWord, number][] = [];
  failing = false;

  async list(): Promise<IStudy[] | null> {
    return this.studies.map(s => ({ ...s }));
  }

  async decide(name: string, decision: DecisionWord, version: number): Promise<DecideResult> {
    this.puts.push([name, decision, version]);
    const found = this.studies.find(s => s.study === name)!;
    if (this.failing) {
      return 'failed';
    }
    if (found.version !== version) {
      return 'stale';
    }
    found.decision = decision;
    found.recording = decision !== 'declined';
    return 'taken';
  }

  bump(name: string): void {
    const found = this.studies.find(s => s.study === name)!;
    Object.assign(found, { version: found.version + 1, decision: null, recording: false });
  }
}

describe('ConsentModel and askInTurn', () => {
  it('asks for each awaiting study in turn, never two at once, and re-reads after each', async () => {
    const api = new FakeApi([study('a'), study('b', { decision: 'granted', recording: true })]);
    api.studies.push(study('c', { mode: 'notice', recording: true }));
    const decided = vi.fn();
    const model = new ConsentModel(api, decided);
    await model.refresh();
    let open = 0;
    const asked: string[] = [];
    await askInTurn(model, async s => {
      open += 1;
      expect(open).toBe(1);
      asked.push(s.study);
      await Promise.resolve();
      open -= 1;
      return s.mode === 'notice' ? 'shown' : 'declined';
    });
    expect(asked).toEqual(['a', 'c']);
    expect(api.puts).toEqual([
      ['a', 'declined', 1],
      ['c', 'shown', 1]
    ]);
    expect(decided).toHaveBeenCalledTimes(2);
    expect(model.studies.map(s => s.decision)).toEqual(['declined', 'granted', 'shown']);
  });

  it('a dialog closed without a decision is not asked again until the next page load', async () => {
    const api = new FakeApi([study('a'), study('b')]);
    const model = new ConsentModel(api);
    await model.refresh();
    const ask = vi.fn(async () => null);
    await askInTurn(model, ask);
    expect(ask).toHaveBeenCalledTimes(2);
    expect(api.puts).toEqual([]);
  });

  it('a stale version (409) re-reads the study and asks again with the new version', async () => {
    const api = new FakeApi([study('a')]);
    const model = new ConsentModel(api);
    await model.refresh();
    api.bump('a'); // the admin raised the version while the dialog was open
    const versions: number[] = [];
    await askInTurn(model, async s => {
      versions.push(s.version);
      return 'granted';
    });
    expect(versions).toEqual([1, 2]);
    expect(api.puts).toEqual([
      ['a', 'granted', 1],
      ['a', 'granted', 2]
    ]);
    expect(model.studies[0]).toMatchObject({ version: 2, decision: 'granted', recording: true });
  });

  it('a failed PUT is not retried in a loop, and nothing is reloaded', async () => {
    const api = new FakeApi([study('a')]);
    api.failing = true;
    const decided = vi.fn();
    const model = new ConsentModel(api, decided);
    await model.refresh();
    const ask = vi.fn(async () => 'granted' as const);
    await askInTurn(model, ask);
    expect(ask).toHaveBeenCalledTimes(1);
    expect(decided).not.toHaveBeenCalled();
  });

  it('tells listeners after each read; an unreadable list keeps the last one', async () => {
    const api = new FakeApi([study('a')]);
    const model = new ConsentModel(api);
    const seen = vi.fn();
    const disconnect = model.onChange(seen);
    await model.refresh();
    vi.spyOn(api, 'list').mockResolvedValue(null);
    await model.refresh();
    expect(model.unknown).toBe(true);
    expect(model.studies.map(s => s.study)).toEqual(['a']);
    disconnect();
    await model.refresh();
    expect(seen).toHaveBeenCalledTimes(2);
  });
});

describe('the words shown', () => {
  it('recording state over the studies; none without studies', () => {
    expect(recordingState([])).toBeNull();
    expect(recordingState([study('a')])).toBe('off');
    expect(recordingState([study('a', { recording: true })])).toBe('on');
    expect(recordingState([study('a'), study('b', { recording: true })])).toBe('partial');
  });

  it('the choices left: withdraw after accepting, only "I have read this" for a notice', () => {
    const granted = study('a', { decision: 'granted' });
    expect(choices(granted)).toEqual(['declined']);
    expect(choiceLabel(granted, 'declined')).toBe('Withdraw');
    expect(choices(study('b')).map(w => choiceLabel(study('b'), w))).toEqual(['Accept', 'Decline']);
    const notice = study('c', { mode: 'notice' });
    expect(choices(notice).map(w => choiceLabel(notice, w))).toEqual(['I have read this']);
    expect(choices({ ...notice, decision: 'shown' })).toEqual([]);
  });
});

/** ServerConnection settings whose fetch answers from a script and records the requests. */
function settings(reply: (request: Request) => Response): [ServerConnection.ISettings, string[]] {
  const calls: string[] = [];
  const fetch = async (input: RequestInfo, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const body = request.method === 'PUT' ? ` ${await request.clone().text()}` : '';
    calls.push(`${request.method} ${request.url.split('?')[0]}${body}`);
    return reply(request);
  };
  const made = ServerConnection.makeSettings({
    baseUrl: 'http://127.0.0.1:8888/base/',
    fetch: fetch as typeof globalThis.fetch
  });
  return [made, calls];
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

describe('ServerConsentApi', () => {
  it('GET api/telemetry/consent under the base URL; 404 (older server): no studies', async () => {
    const [made, calls] = settings(() => json(200, { studies: [study('a'), { bad: 1 }] }));
    expect(await new ServerConsentApi(made).list()).toEqual([study('a')]);
    expect(calls).toEqual(['GET http://127.0.0.1:8888/base/api/telemetry/consent']);
    expect(await new ServerConsentApi(settings(() => json(404, {}))[0]).list()).toEqual([]);
  });

  it('an error or a network failure: null (not known)', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    expect(await new ServerConsentApi(settings(() => json(500, {}))[0]).list()).toBeNull();
    const down = settings(() => {
      throw new TypeError('down');
    })[0];
    expect(await new ServerConsentApi(down).list()).toBeNull();
  });

  it('PUT with the version shown, the study name escaped; 409 is stale', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const statuses = [200, 409, 400];
    const [made, calls] = settings(() => json(statuses.shift()!, {}));
    const api = new ServerConsentApi(made);
    expect(await api.decide('intro 2027', 'granted', 3)).toBe('taken');
    expect(await api.decide('intro 2027', 'granted', 3)).toBe('stale');
    expect(await api.decide('intro 2027', 'granted', 3)).toBe('failed');
    expect(calls[0]).toBe(
      'PUT http://127.0.0.1:8888/base/api/telemetry/consent/intro%202027 ' +
        '{"decision":"granted","version":3}'
    );
  });
});

describe('the schema listing after a decision', () => {
  const listing = (consent?: 'needed' | 'declined'): ISchemaSummary[] => [
    { id: CELL, version: 1, frontend: true, allowed: true, ...(consent ? { consent } : {}) }
  ];

  it('a schema a study holds back is not sent', () => {
    expect(new RecordedSchemas(listing('needed')).accepts(CELL, 1)).toBe(false);
    expect(new RecordedSchemas(listing('declined')).accepts(CELL, 1)).toBe(false);
    expect(new RecordedSchemas(listing()).accepts(CELL, 1)).toBe(true);
  });

  it('reload switches sending on and off; an unreadable listing keeps the last one', async () => {
    const transport = new FakeTransport();
    const telemetry = new Telemetry(
      new EventQueue(transport, { clientIds: true }),
      Promise.resolve(listing('needed'))
    );
    await telemetry.ready;
    expect(telemetry.accepts(CELL, 1)).toBe(false);
    await telemetry.reload(Promise.resolve(listing()));
    expect(telemetry.accepts(CELL, 1)).toBe(true);
    telemetry.record({ schema_id: CELL, version: 1, data: { action: 'executed' } });
    await telemetry.flush();
    expect(transport.posts).toHaveLength(1);
    await telemetry.reload(Promise.resolve(listing('declined')));
    await telemetry.reload(Promise.resolve(null));
    expect(telemetry.accepts(CELL, 1)).toBe(false);
  });
});
