// Static roles of a database mount: the existing users whose password the
// broker rotates; last/next rotation and "rotate now" (PUT <mount>rotate-role/<name>).

import { api, encodePath, list } from '../api.js';
import { Confirm, EmptyState, ErrorMessage, Loading, Notice, PageHeader, Time, formatDuration, useLoad } from '../components.js';
import { html, useState } from '../lib.js';

export function StaticRoles({ mount }) {
  const [state, reload] = useLoad(async () => {
    const names = await list(`${mount}static-roles`);
    return Promise.all(names.map(async (name) => ({ name, role: (await api('GET', `${mount}static-roles/${encodePath(name)}`)).data })));
  }, [mount]);
  const [confirm, setConfirm] = useState(null);
  const [notice, setNotice] = useState('');

  return html`<section>
    <${PageHeader} title="Static roles"><button type="button" class="btn" onClick=${reload}>Refresh</button><//>
    <p class="lead">Existing database users whose password the broker rotates on a period or a schedule.</p>
    <${Notice} text=${notice} />
    <${ErrorMessage} error=${state.error} />
    ${state.loading && !state.data ? html`<${Loading} what="static roles" />` : null}
    ${state.data?.length === 0
      ? html`<${EmptyState} title="No static roles">
          <p>Create one with the API or the CLI, e.g. <code>dbroker write ${mount}static-roles/app db_name=main username=app rotation_period=24h</code>.</p>
        <//>`
      : null}
    ${state.data?.length
      ? html`<div class="table-wrap"><table>
          <caption class="visually-hidden">Static roles of ${mount}</caption>
          <thead><tr><th scope="col">Role</th><th scope="col">Database user</th><th scope="col">Connection</th><th scope="col">Rotation</th><th scope="col">Last rotation</th><th scope="col">Next rotation</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>${state.data.map(
            ({ name, role }) => html`<tr data-static-role=${name}>
              <th scope="row">${name}</th>
              <td><code>${role.active_username ?? role.username}</code></td>
              <td>${role.db_name}</td>
              <td>${role.rotation_schedule ? `schedule ${role.rotation_schedule}` : `every ${formatDuration(role.rotation_period ?? 0)}`}</td>
              <td data-testid="static-last"><${Time} iso=${role.last_vault_rotation} /></td>
              <td><${Time} iso=${role.next_vault_rotation} empty="—" /></td>
              <td class="row-actions"><button type="button" class="btn btn-small btn-warn" onClick=${() => setConfirm(name)}>Rotate now…</button></td>
            </tr>`,
          )}</tbody>
        </table></div>`
      : null}
    ${confirm
      ? html`<${Confirm} title=${`Rotate the password of ${confirm} now?`} confirmLabel="Rotate now" onClose=${() => setConfirm(null)}
          action=${() => api('PUT', `${mount}rotate-role/${encodePath(confirm)}`)}
          onDone=${() => { setNotice(`Password of ${confirm} rotated.`); reload(); }}>
          <p>Applications holding the current password must read the new one from <code>${mount}static-creds/${confirm}</code>.</p>
        <//>`
      : null}
  </section>`;
}
