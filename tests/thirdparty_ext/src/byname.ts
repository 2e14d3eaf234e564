import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Token } from '@lumino/coreutils';

import { ACTIVATED } from './plugin';

/** The part of ITelemetry this plugin uses, declared here instead of imported. */
interface ITelemetryLike {
  record(event: { schema_id: string; version: number; data: Record<string, unknown> }): void;
  flush(): Promise<void>;
}

/**
 * The page's ITelemetry found by the labextension's name, without importing the package: the
 * token object comes from the jupyter-telemetry-ext labextension itself, as JupyterLab loads it.
 */
async function telemetryByName(app: JupyterFrontEnd): Promise<ITelemetryLike | null> {
  type Container = { get(module: string): Promise<() => { ITelemetry?: Token<unknown> }> };
  const containers = (window as unknown as { _JUPYTERLAB?: Record<string, Container> })._JUPYTERLAB;
  const container = containers?.['jupyter-telemetry-ext'];
  if (!container) {
    return null; // not installed, or disabled
  }
  const token = (await container.get('./index'))().ITelemetry;
  return token ? ((await app.resolveOptionalService(token)) as ITelemetryLike | null) : null;
}

/**
 * Records one event through the ITelemetry it finds by name, after its plugin was activated.
 */
export const byNamePlugin: JupyterFrontEndPlugin<void> = {
  id: 'telemetry-thirdparty-example:by-name',
  description: 'Records through ITelemetry looked up by its labextension name.',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    void app.started.then(async () => {
      // A token made here with the same name is another token: services are found by object.
      const sameName = new Token<unknown>('jupyter-telemetry-ext:ITelemetry');
      const resolved = (await app.resolveOptionalService(sameName)) !== null;
      const telemetry = await telemetryByName(app);
      telemetry?.record({
        schema_id: ACTIVATED,
        version: 1,
        data: { action: 'by-name', same_name_token_resolves: resolved }
      });
      await telemetry?.flush();
    });
  }
};
