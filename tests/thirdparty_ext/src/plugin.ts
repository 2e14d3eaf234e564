import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ITelemetry } from 'jupyter-telemetry-ext';

/** The schema this extension ships (schemas/activated/v1.yaml). */
export const ACTIVATED = 'https://events.example.org/telemetry-thirdparty-example/activated';

/**
 * Records one event when it is activated, through the ITelemetry the page already has.
 */
export const plugin: JupyterFrontEndPlugin<void> = {
  id: 'telemetry-thirdparty-example:plugin',
  description: 'Records that it was activated, through ITelemetry.',
  autoStart: true,
  requires: [ITelemetry], // or optional: [ITelemetry], for when it is not installed
  activate: (app: JupyterFrontEnd, telemetry: ITelemetry) => {
    telemetry.record({
      schema_id: ACTIVATED,
      version: 1,
      data: { action: 'activated', accepts_method: typeof telemetry.accepts === 'function' }
    });
    void telemetry.flush(); // now rather than after flushInterval
  }
};
