import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { recordCells, recordCommands, recordNotebooks } from './builtin';
import { EventQueue, IQueueSettings } from './queue';
import { ServerTransport, fetchSchemas } from './server';
import { Telemetry } from './telemetry';
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
      void followSettings(registry, queue);
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
 * Apply the user's settings to the queue now and whenever they change.
 */
async function followSettings(registry: ISettingRegistry, queue: EventQueue): Promise<void> {
  const apply = (settings: ISettingRegistry.ISettings) => queue.configure(queueSettings(settings));
  try {
    const settings = await registry.load(PLUGIN_ID);
    apply(settings);
    settings.changed.connect(apply);
  } catch (reason) {
    console.warn('Telemetry: settings not loaded; using the defaults', reason);
  }
}

function queueSettings(settings: ISettingRegistry.ISettings): Partial<IQueueSettings> {
  return {
    batchSize: settings.composite.batchSize as number,
    flushInterval: (settings.composite.flushInterval as number) * 1000,
    maxQueueSize: settings.composite.maxQueueSize as number
  };
}

/**
 * Records the built-in events (notebooks, cells, commands) that the admin allows.
 */
const builtinPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-telemetry-ext:builtin',
  description: 'Records notebook, cell and command events through ITelemetry.',
  autoStart: true,
  requires: [ITelemetry],
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, telemetry: ITelemetry, tracker: INotebookTracker | null) => {
    recordCommands(telemetry, app.commands);
    recordCells(telemetry, tracker);
    if (tracker) {
      recordNotebooks(telemetry, tracker);
    }
  }
};

export default [telemetryPlugin, builtinPlugin];
