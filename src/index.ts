import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

// Loaded with the plugins, not lazily: activate() provides ITelemetry at once and connects the
// recorders at once, so that no notebook restored at start-up is missed.
/* eslint-disable jupyter/prefer-lazy-imports */
import { recordCells, recordCommands, recordNotebooks } from './builtin';
import { consentPlugin } from './consentplugin';
import { EventQueue, IQueueSettings } from './queue';
import { KindSettings, Recorder } from './recorder';
import { DEFAULT_TIMINGS, IResearchTimings, NotebookSessions, recordResearch } from './research';
import { ServerTransport, fetchSchemas } from './server';
import { Telemetry } from './telemetry';
/* eslint-enable jupyter/prefer-lazy-imports */
import { ITelemetry } from './tokens';

export * from './tokens';

const PLUGIN_ID = 'jupyter-telemetry-ext:plugin';

/**
 * Provides ITelemetry: one client per page, shared by every extension.
 */
const telemetryPlugin: JupyterFrontEndPlugin<ITelemetry> = {
  id: PLUGIN_ID,
  description: 'Provides ITelemetry, the client of the jupyter_telemetry_ext server extension.',
  autoStart: true,
  provides: ITelemetry,
  optional: [ISettingRegistry],
  activate: (app: JupyterFrontEnd, registry: ISettingRegistry | null): ITelemetry => {
    const serverSettings = app.serviceManager.serverSettings;
    const queue = new EventQueue(new ServerTransport(serverSettings));
    const telemetry = new Telemetry(queue, fetchSchemas(serverSettings));
    if (registry) {
      void followSettings(registry, settings => queue.configure(queueSettings(settings)));
    }
    // Hidden is the last state a page is sure to reach (mobile browsers skip pagehide).
    const leave = () => telemetry.flushKeepalive();
    window.addEventListener('pagehide', leave);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') {
        leave();
      }
    });
    return telemetry;
  }
};

/**
 * Apply the user's settings now and whenever they change.
 */
async function followSettings(
  registry: ISettingRegistry,
  apply: (settings: ISettingRegistry.ISettings) => void
): Promise<ISettingRegistry.ISettings | null> {
  try {
    const settings = await registry.load(PLUGIN_ID);
    apply(settings);
    settings.changed.connect(apply);
    return settings;
  } catch (reason) {
    console.warn('Telemetry: settings not loaded; using the defaults', reason);
    return null;
  }
}

function queueSettings(settings: ISettingRegistry.ISettings): Partial<IQueueSettings> {
  return {
    batchSize: settings.composite.batchSize as number,
    flushInterval: (settings.composite.flushInterval as number) * 1000,
    maxQueueSize: settings.composite.maxQueueSize as number
  };
}

function timings(settings: ISettingRegistry.ISettings): IResearchTimings {
  const seconds = (name: string, fallback: number) => {
    const value = settings.composite[name];
    return typeof value === 'number' && value > 0 ? value * 1000 : fallback;
  };
  return {
    idleTimeout: seconds('idleTimeout', DEFAULT_TIMINGS.idleTimeout),
    summaryInterval: seconds('activeTimeInterval', DEFAULT_TIMINGS.summaryInterval)
  };
}

/**
 * Records the built-in events (notebooks, cells, commands and the research kinds) that the
 * user's settings leave on and the admin allows.
 */
const builtinPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-telemetry-ext:builtin',
  description: 'Records notebook, cell and command events through ITelemetry.',
  autoStart: true,
  requires: [ITelemetry],
  optional: [INotebookTracker, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    telemetry: ITelemetry,
    tracker: INotebookTracker | null,
    registry: ISettingRegistry | null
  ) => {
    // Connected at once so that no notebook restored at start-up is missed; the recorder
    // holds events until the settings say which kinds are on.
    const recorder = new Recorder(telemetry);
    const researchTimings = { ...DEFAULT_TIMINGS };
    const sessions = new NotebookSessions();
    recordCommands(recorder, app.commands);
    recordCells(recorder, tracker, sessions);
    if (tracker) {
      recordNotebooks(recorder, tracker, sessions);
      recordResearch(recorder, tracker, app.shell, sessions, researchTimings);
    }
    const apply = (settings: ISettingRegistry.ISettings) => {
      Object.assign(researchTimings, timings(settings));
      recorder.configure((settings.composite.events ?? {}) as KindSettings);
    };
    void (registry ? followSettings(registry, apply) : Promise.resolve(null)).then(settings => {
      if (settings === null) {
        recorder.configure({}); // no settings: every kind on
      }
    });
  }
};

export default [telemetryPlugin, builtinPlugin, consentPlugin];
