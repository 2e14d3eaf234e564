import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ITelemetry } from 'jupyter-telemetry-ext';

/** The schema this extension ships (schemas/activated/v1.yaml). */
const ACTIVATED = 'https://events.example.org/telemetry-thirdparty-example/activated';

/**
 * Records one event when it is activated, through the ITelemetry the page already has.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'telemetry-thirdparty-example:plugin',
  description: 'Records that it was activated, through ITelemetry.',
  autoStart: true,
  requires: [ITelemetry],
  activate: (app: JupyterFrontEnd, telemetry: ITelemetry) => {
    telemetry.record({
      schema_id: ACTIVATED,
      version: 1,
      data: { action: 'activated', accepts_method: typeof telemetry.accepts === 'function' }
    });
    void telemetry.flush();
  }
};

export default plugin;
