/**
 * The consent plugin: asks for the decisions the server's studies await, once Lab is
 * restored, and shows the recording state in the status bar.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IStatusBar } from '@jupyterlab/statusbar';

import { ConsentModel, ServerConsentApi, askInTurn } from './consent';
import { ITelemetry } from './tokens';

/**
 * Asks for consent in dialogs, one after another, never holding up the other plugins.
 */
export const consentPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-telemetry-ext:consent',
  description: 'Asks for the decisions the telemetry studies await; shows them in the status bar.',
  autoStart: true,
  requires: [ITelemetry],
  optional: [IStatusBar, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    telemetry: ITelemetry,
    statusBar: IStatusBar | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const settings = app.serviceManager.serverSettings;
    // After a decision, the schema listing says at once which events the studies keep out.
    const reload = async () => {
      const [{ Telemetry }, { fetchSchemas }] = await Promise.all([
        import('./telemetry'),
        import('./server')
      ]);
      if (telemetry instanceof Telemetry) {
        await telemetry.reload(fetchSchemas(settings));
      }
    };
    const model = new ConsentModel(new ServerConsentApi(settings), reload);
    // Not awaited: the dialogs wait for the user, the rest of Lab does not wait for them.
    void app.restored.then(() => start(model, statusBar, rendermime));
  }
};

/**
 * Read the studies; when there are any, show the status item and ask for each decision
 * awaited, one dialog after another.
 */
async function start(
  model: ConsentModel,
  statusBar: IStatusBar | null,
  rendermime: IRenderMimeRegistry | null
): Promise<void> {
  await model.refresh();
  if (model.studies.length === 0) {
    return; // no study (or an older server): nothing to show
  }
  const [{ dialogAsk, markdownRenderer }, { ConsentStatus }] = await Promise.all([
    import('./consentdialog'),
    import('./consentstatus')
  ]);
  const ask = dialogAsk(markdownRenderer(rendermime));
  if (statusBar) {
    const item = new ConsentStatus(model, ask);
    statusBar.registerStatusItem('jupyter-telemetry-ext:consent', { item, align: 'right' });
  }
  await askInTurn(model, ask);
}
