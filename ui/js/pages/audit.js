// Audit devices (GET sys/audit): where every request and response is logged, secrets hashed.

import { api } from '../api.js';
import { EmptyState, ErrorMessage, Loading, PageHeader, useLoad } from '../components.js';
import { html } from '../lib.js';

export function Audit() {
  const [state, reload] = useLoad(async () => {
    const body = await api('GET', 'sys/audit');
    return Object.entries(body.data ?? {}).map(([path, d]) => ({ path, ...d }));
  }, []);
  return html`<section>
    <${PageHeader} title="Audit devices"><button type="button" class="btn" onClick=${reload}>Refresh</button><//>
    <p class="lead">Every request and response goes to each enabled device, with secrets replaced by keyed hashes.</p>
    <${ErrorMessage} error=${state.error} />
    ${state.loading && !state.data ? html`<${Loading} what="audit devices" />` : null}
    ${state.data?.length === 0
      ? html`<${EmptyState} title="No audit devices enabled">
          <p>Requests are not being audited. Enable a device with <code>dbroker audit enable file file_path=/var/log/dbroker/audit.log</code>.</p>
        <//>`
      : null}
    ${state.data?.length
      ? html`<div class="table-wrap"><table data-testid="audit">
          <thead><tr><th scope="col">Path</th><th scope="col">Type</th><th scope="col">Description</th><th scope="col">Options</th></tr></thead>
          <tbody>${state.data.map(
            (d) => html`<tr>
              <th scope="row"><code>${d.path}</code></th>
              <td>${d.type}</td>
              <td>${d.description || html`<span class="muted">—</span>`}</td>
              <td>${Object.entries(d.options ?? {}).map(([k, v]) => html`<div><code>${k}=${String(v)}</code></div>`)}</td>
            </tr>`,
          )}</tbody>
        </table></div>`
      : null}
  </section>`;
}
